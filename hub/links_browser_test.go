package hub_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
	"github.com/google/go-cmp/cmp"
	"github.com/labstack/echo/v4"

	"github.com/partnerhub/partnerhub/hub"
	"github.com/partnerhub/partnerhub/hub/store/storetest"
)

// chromiumPath finds a Chromium for the browser test: $PARTNERHUB_CHROMIUM,
// else chromium on PATH. Without one the test skips, or fails when
// CI=true.
func chromiumPath(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("PARTNERHUB_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	msg := "Chromium not found (install Debian's chromium package or set PARTNERHUB_CHROMIUM): t.js is not tested in a browser"
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

// merchantPage is a shop page with t.js, a Stripe Payment Link, a Buy
// Button, a Pricing Table, an unrelated link and a Payment Link added
// after load. ?days= sets data-cookie-days; ?shopify=1 makes it a
// Shopify storefront.
func merchantPage(c echo.Context) error {
	attr := ""
	if d := c.QueryParam("days"); d != "" {
		attr = fmt.Sprintf(` data-cookie-days="%s"`, d)
	}
	shopify := ""
	if c.QueryParam("shopify") != "" {
		shopify = `<script>window.Shopify = {shop: "test.myshopify.com", routes: {root: "/"}};</script>`
	}
	return c.HTML(http.StatusOK, `<!doctype html>
<html><head><meta charset="utf-8"><title>Shop</title>`+shopify+`
<script src="/t.js"`+attr+`></script></head>
<body>
<a id="pl" href="https://buy.stripe.com/test_123">Buy</a>
<a id="pl2" href="https://buy.stripe.com/test_456?prefilled_email=a%40b.example#pay">Buy yearly</a>
<a id="other" href="https://example.com/docs?x=1">Docs</a>
<stripe-buy-button id="bb" buy-button-id="buy_btn_1" publishable-key="pk_test_1"></stripe-buy-button>
<stripe-pricing-table id="pt" pricing-table-id="prctbl_1" publishable-key="pk_test_1"></stripe-pricing-table>
<script>
window.addEventListener("load", function () {
  setTimeout(function () {
    var a = document.createElement("a");
    a.id = "late";
    a.href = "https://buy.stripe.com/test_late";
    a.textContent = "Buy later";
    document.body.appendChild(a);
  }, 50);
});
</script>
</body></html>`)
}

// pageState is what the test reads from the page once t.js has run.
type pageState struct {
	ClickID string            `json:"clickId"`
	Hrefs   map[string]string `json:"hrefs"`
	Button  string            `json:"button"`
	Table   string            `json:"table"`
	Paddle  map[string]string `json:"paddle"`
	Ready   string            `json:"ready"`
	Cookie  string            `json:"cookie"`
}

const readState = `new Promise(function (resolve) {
  window.partnerhub.ready(function (id) {
    var hrefs = {};
    ["pl", "pl2", "other", "late"].forEach(function (i) { hrefs[i] = document.getElementById(i).getAttribute("href"); });
    resolve(JSON.stringify({
      clickId: window.partnerhub.clickId,
      hrefs: hrefs,
      button: document.getElementById("bb").getAttribute("client-reference-id"),
      table: document.getElementById("pt").getAttribute("client-reference-id"),
      paddle: window.partnerhub.paddleCustomData(),
      ready: id,
      cookie: document.cookie
    }));
  });
})`

func wantState(id string) pageState {
	return pageState{
		ClickID: id,
		Hrefs: map[string]string{
			"pl":    "https://buy.stripe.com/test_123?client_reference_id=" + id,
			"pl2":   "https://buy.stripe.com/test_456?prefilled_email=a%40b.example&client_reference_id=" + id + "#pay",
			"other": "https://example.com/docs?x=1",
			"late":  "https://buy.stripe.com/test_late?client_reference_id=" + id,
		},
		Button: id,
		Table:  id,
		Paddle: map[string]string{"partnerhub_click": id},
		Ready:  id,
		// ph_vid is HttpOnly: the page never sees it.
		Cookie: "ph_click=" + id,
	}
}

func TestTrackerInChromium(t *testing.T) {
	chrome := chromiumPath(t)

	db := storetest.Open(t)
	f := newLinksFixture(t, db, hub.ProgramSettings{})
	l, e := f.links(t, hub.LinksConfig{})
	defer closeLinks(t, l)
	e.GET("/shop", merchantPage)
	carts := make(chan string, 4)
	e.POST("/cart/update.js", func(c echo.Context) error {
		b, _ := io.ReadAll(io.LimitReader(c.Request().Body, 4096))
		carts <- c.Request().Header.Get("Content-Type") + " " + string(b)
		return c.JSON(http.StatusOK, map[string]any{"attributes": map[string]string{}})
	})
	srv := httptest.NewServer(e) // 127.0.0.1
	defer srv.Close()

	ctx := context.Background()
	prog, err := db.GetProgram(ctx, hub.DefaultProgramID)
	if err != nil {
		t.Fatal(err)
	}
	prog.CookieDays = 30
	prog.DestinationURL = srv.URL + "/shop"
	if err := db.UpdateProgram(ctx, prog); err != nil {
		t.Fatal(err)
	}

	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chrome),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	defer cancelAlloc()
	bctx, cancelBrowser := chromedp.NewContext(actx)
	defer cancelBrowser()
	if err := chromedp.Do(bctx); err != nil { // starts the browser
		t.Fatalf("starting Chromium %s: %v", chrome, err)
	}

	// visit loads url and returns the page's state once t.js is done.
	visit := func(t *testing.T, url string) pageState {
		t.Helper()
		tctx, cancel := context.WithTimeout(bctx, 20*time.Second)
		defer cancel()
		for try := 1; ; try++ {
			err := chromedp.Do(tctx,
				chromedp.Navigate(url),
				chromedp.Poll[chromedp.Void](`document.getElementById("late") && window.partnerhub`,
					chromedp.WithPollingTimeout(10*time.Second)),
			)
			// The poll can race the navigation and name the previous
			// document's execution context, which Chromium has just
			// destroyed: load the page again.
			if err != nil && try < 3 && strings.Contains(err.Error(), "Cannot find context with specified id") {
				continue
			}
			if err != nil {
				t.Fatalf("loading %s: %v", url, err)
			}
			break
		}
		js, err := chromedp.Run(tctx, chromedp.Evaluate[string](readState, chromedp.EvalAwaitPromise))
		if err != nil {
			t.Fatalf("reading page state: %v", err)
		}
		var st pageState
		if err := json.Unmarshal([]byte(js), &st); err != nil {
			t.Fatalf("page state %q: %v", js, err)
		}
		return st
	}
	// clickCookie returns the ph_click cookie's value and lifetime.
	clickCookie := func(t *testing.T) (string, time.Duration) {
		t.Helper()
		res, err := chromedp.Call(bctx, network.GetCookies, network.GetCookiesParams{URLs: []string{srv.URL + "/shop"}})
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range res.Cookies {
			if c.Name == "ph_click" {
				exp := time.Unix(int64(c.Expires), 0)
				return c.Value, time.Until(exp)
			}
		}
		return "", 0
	}
	near := func(d, want time.Duration) bool { return math.Abs(float64(d-want)) < float64(time.Hour) }
	clearCookies := func(t *testing.T) {
		t.Helper()
		if _, err := chromedp.Call(bctx, network.ClearBrowserCookies, cdp.Empty{}); err != nil {
			t.Fatal(err)
		}
	}

	var clickID string
	t.Run("referral link then merchant page with the click in the URL", func(t *testing.T) {
		clearCookies(t)
		st := visit(t, srv.URL+"/r/AdaLove")
		clickID = st.ClickID
		if !clickIDRE.MatchString(clickID) {
			t.Fatalf("partnerhub.clickId = %q, want a click id", clickID)
		}
		if d := cmp.Diff(wantState(clickID), st); d != "" {
			t.Errorf("page state (-want +got):\n%s", d)
		}
		if v, ttl := clickCookie(t); v != clickID || !near(ttl, 30*24*time.Hour) {
			t.Errorf("ph_click cookie = %q for %v, want %q for 30 days", v, ttl, clickID)
		}
	})
	t.Run("merchant page with only the cookie", func(t *testing.T) {
		if clickID == "" {
			t.Skip("needs the first case")
		}
		st := visit(t, srv.URL+"/shop?utm_source=newsletter")
		if d := cmp.Diff(wantState(clickID), st); d != "" {
			t.Errorf("page state (-want +got):\n%s", d)
		}
	})
	t.Run("link straight to the merchant stores the cookie for the program window", func(t *testing.T) {
		clearCookies(t)
		id := hub.NewID("clk")
		visit(t, srv.URL+"/shop?partnerhub_click="+id)
		st := visit(t, srv.URL+"/shop")
		if d := cmp.Diff(wantState(id), st); d != "" {
			t.Errorf("page state (-want +got):\n%s", d)
		}
		if v, ttl := clickCookie(t); v != id || !near(ttl, 30*24*time.Hour) {
			t.Errorf("ph_click cookie = %q for %v, want %q for 30 days", v, ttl, id)
		}
	})
	t.Run("data-cookie-days overrides the window", func(t *testing.T) {
		clearCookies(t)
		id := hub.NewID("clk")
		visit(t, srv.URL+"/shop?days=7&partnerhub_click="+id)
		if v, ttl := clickCookie(t); v != id || !near(ttl, 7*24*time.Hour) {
			t.Errorf("ph_click cookie = %q for %v, want %q for 7 days", v, ttl, id)
		}
	})
	t.Run("no click: nothing decorated", func(t *testing.T) {
		clearCookies(t)
		st := visit(t, srv.URL+"/shop?partnerhub_click="+url0("<script>"))
		want := pageState{
			Hrefs: map[string]string{
				"pl": "https://buy.stripe.com/test_123", "pl2": "https://buy.stripe.com/test_456?prefilled_email=a%40b.example#pay",
				"other": "https://example.com/docs?x=1", "late": "https://buy.stripe.com/test_late",
			},
			Paddle: map[string]string{},
		}
		if d := cmp.Diff(want, st); d != "" {
			t.Errorf("page state (-want +got):\n%s", d)
		}
	})
	t.Run("Shopify cart attribute", func(t *testing.T) {
		clearCookies(t)
		id := hub.NewID("clk")
		visit(t, srv.URL+"/shop?shopify=1&partnerhub_click="+id)
		select {
		case got := <-carts:
			want := `application/json {"attributes":{"partnerhub_click":"` + id + `"}}`
			if got != want {
				t.Errorf("POST /cart/update.js = %q, want %q", got, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("no POST /cart/update.js")
		}
		visit(t, srv.URL+"/shop?shopify=1")
		select {
		case got := <-carts:
			t.Errorf("cart updated again for the same click in one session: %q", got)
		case <-time.After(500 * time.Millisecond):
		}
	})
}

func url0(s string) string { return strings.NewReplacer("<", "%3C", ">", "%3E").Replace(s) }
