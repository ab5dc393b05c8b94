// partnerhub dashboard: small progressive enhancements. Every page works
// without this script.
(function () {
  "use strict";
  var status = function (msg) {
    var el = document.getElementById("status");
    if (el) { el.textContent = msg; }
  };

  // <time datetime> in the viewer's time zone; the UTC text stays as the
  // fallback and the title.
  function localize(root) {
    var fmt;
    try {
      fmt = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });
    } catch (e) { return; }
    root.querySelectorAll("time[datetime]").forEach(function (t) {
      var d = new Date(t.getAttribute("datetime"));
      if (isNaN(d)) { return; }
      if (!t.title) { t.title = t.textContent; }
      t.textContent = fmt.format(d);
    });
  }

  document.addEventListener("DOMContentLoaded", function () { localize(document); });
  document.addEventListener("htmx:afterSwap", function (e) { localize(e.target.parentNode || document); });

  document.addEventListener("click", function (e) {
    // Copy buttons: data-copy names the input to copy.
    var copy = e.target.closest("[data-copy]");
    if (copy) {
      var input = document.querySelector(copy.getAttribute("data-copy"));
      if (!input) { return; }
      var done = function () { copy.textContent = "Copied"; status("Copied to the clipboard"); };
      if (navigator.clipboard && window.isSecureContext) {
        navigator.clipboard.writeText(input.value).then(done, function () { input.select(); });
      } else {
        input.select();
        try { document.execCommand("copy"); done(); } catch (err) { status("Select the text and copy it"); }
      }
      return;
    }
    // Downloads with progress: data-download names the file.
    var dl = e.target.closest("a[data-download]");
    if (dl && window.fetch && window.URL && URL.createObjectURL) {
      e.preventDefault();
      if (dl.getAttribute("aria-busy") === "true") { return; }
      var label = dl.textContent;
      dl.setAttribute("aria-busy", "true");
      dl.textContent = "Preparing CSV…";
      status("Preparing CSV…");
      fetch(dl.href, { credentials: "same-origin" }).then(function (r) {
        if (!r.ok) { throw new Error("HTTP " + r.status); }
        return r.blob();
      }).then(function (b) {
        var a = document.createElement("a");
        a.href = URL.createObjectURL(b);
        a.download = dl.getAttribute("data-download");
        document.body.appendChild(a);
        a.click();
        a.remove();
        dl.textContent = label + " ✓";
        status("CSV downloaded (" + b.size + " bytes)");
      }).catch(function (err) {
        dl.textContent = label;
        status("Export failed: " + err.message);
      }).finally(function () { dl.removeAttribute("aria-busy"); });
    }
  });

  document.addEventListener("submit", function (e) {
    var f = e.target;
    var q = f.getAttribute("data-confirm");
    if (q && !window.confirm(q)) { e.preventDefault(); return; }
    var busy = f.getAttribute("data-busy");
    if (busy) {
      var b = f.querySelector("button[type=submit]");
      if (b) {
        setTimeout(function () { b.disabled = true; }, 0);
        b.textContent = busy;
        f.setAttribute("aria-busy", "true");
        status(busy);
      }
    }
  });
})();
