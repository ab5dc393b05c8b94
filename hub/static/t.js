/*! partnerhub t.js: carries a referral click id into checkout. No dependencies.
 *
 * <script src="https://HUB/t.js" async></script>
 *   data-cookie-days="N"  overrides the cookie window the hub rendered in.
 *
 * The click id comes from ?partnerhub_click= (stored then in a first-party
 * cookie for the cookie window) or from that cookie. It is put on Stripe
 * Payment Links (client_reference_id), Stripe Buy Buttons and Pricing Tables
 * (client-reference-id), the Shopify cart (attributes[partnerhub_click]),
 * and offered for Paddle (partnerhub.paddleCustomData()) and server-side
 * Stripe Checkout (partnerhub.clickId).
 */
(function (w, d) {
  "use strict";
  if (w.partnerhub && w.partnerhub.__loaded) return;

  // Both are rewritten by the hub when it serves the script.
  var COOKIE = /*ph:cookie_name*/"ph_click";
  var DAYS = /*ph:cookie_days*/60;
  var PARAM = "partnerhub_click";
  var VALID = /^clk_[A-Za-z0-9_-]{1,64}$/;

  var me = d.currentScript;
  var attrDays = me && parseInt(me.getAttribute("data-cookie-days"), 10);
  if (attrDays > 0) DAYS = attrDays;

  function fromURL() {
    var m = new RegExp("[?&]" + PARAM + "=([^&#]*)").exec(w.location.search);
    if (!m) return null;
    var v;
    try { v = decodeURIComponent(m[1].replace(/\+/g, " ")); } catch (e) { return null; }
    return VALID.test(v) ? v : null;
  }

  function fromCookie() {
    var parts = d.cookie ? d.cookie.split(";") : [];
    for (var i = 0; i < parts.length; i++) {
      var kv = parts[i].replace(/^\s+/, "");
      if (kv.indexOf(COOKIE + "=") === 0) {
        var v = kv.substring(COOKIE.length + 1);
        if (VALID.test(v)) return v;
      }
    }
    return null;
  }

  var id = fromURL();
  if (id) {
    d.cookie = COOKIE + "=" + id + "; Max-Age=" + DAYS * 86400 + "; Path=/; SameSite=Lax" +
      (w.location.protocol === "https:" ? "; Secure" : "");
  } else {
    id = fromCookie();
  }

  function decorateLink(a) {
    var href = a.getAttribute("href");
    if (!href || href.indexOf("https://buy.stripe.com/") !== 0) return;
    var hash = "", i = href.indexOf("#");
    if (i >= 0) { hash = href.substring(i); href = href.substring(0, i); }
    var q = href.indexOf("?"), base = href, kept = [];
    if (q >= 0) {
      base = href.substring(0, q);
      var ps = href.substring(q + 1).split("&");
      for (var j = 0; j < ps.length; j++) {
        if (ps[j] && ps[j].split("=")[0] !== "client_reference_id") kept.push(ps[j]);
      }
    }
    kept.push("client_reference_id=" + encodeURIComponent(id));
    var next = base + "?" + kept.join("&") + hash;
    if (next !== a.getAttribute("href")) a.setAttribute("href", next);
  }

  function decorateElement(el) {
    var tag = el.tagName;
    if (tag === "A") decorateLink(el);
    else if (tag === "STRIPE-BUY-BUTTON" || tag === "STRIPE-PRICING-TABLE") {
      if (el.getAttribute("client-reference-id") !== id) el.setAttribute("client-reference-id", id);
    }
  }

  function decorate(root) {
    if (!id || !root || root.nodeType !== 1) return;
    decorateElement(root);
    var els = root.querySelectorAll('a[href^="https://buy.stripe.com/"], stripe-buy-button, stripe-pricing-table');
    for (var i = 0; i < els.length; i++) decorateElement(els[i]);
  }

  function shopifyCart() {
    var S = w.Shopify;
    if (!id || !S || !w.fetch) return;
    var key = "ph_cart_click";
    try { if (w.sessionStorage.getItem(key) === id) return; } catch (e) { /* storage blocked */ }
    var root = (S.routes && S.routes.root) || "/";
    var body = { attributes: {} };
    body.attributes[PARAM] = id;
    w.fetch(root + "cart/update.js", {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "Accept": "application/json" },
      body: JSON.stringify(body)
    }).then(function (r) {
      if (r.ok) { try { w.sessionStorage.setItem(key, id); } catch (e) { /* ignore */ } }
    }, function () { /* no Ajax cart here */ });
  }

  var waiting = [], isReady = false;
  function start() {
    if (isReady) return;
    isReady = true;
    decorate(d.documentElement);
    if (id && w.MutationObserver) {
      new MutationObserver(function (ms) {
        for (var i = 0; i < ms.length; i++) {
          var m = ms[i];
          if (m.type === "attributes") decorateElement(m.target);
          for (var j = 0; j < m.addedNodes.length; j++) decorate(m.addedNodes[j]);
        }
      }).observe(d.documentElement, { childList: true, subtree: true, attributes: true, attributeFilter: ["href"] });
    }
    shopifyCart();
    var cbs = waiting;
    waiting = [];
    for (var i = 0; i < cbs.length; i++) call(cbs[i]);
  }
  function call(cb) { try { cb(id); } catch (e) { if (w.console) w.console.error(e); } }

  w.partnerhub = {
    __loaded: true,
    clickId: id,
    // ready(cb) calls cb(clickId) once the page is decorated; clickId is
    // null when the visitor came through no referral link.
    ready: function (cb) { if (isReady) call(cb); else waiting.push(cb); },
    // paddleCustomData() is the customData to pass to Paddle.Checkout.open.
    paddleCustomData: function () {
      var o = {};
      if (id) o[PARAM] = id;
      return o;
    }
  };

  if (d.readyState === "loading") d.addEventListener("DOMContentLoaded", start);
  else start();
})(window, document);
