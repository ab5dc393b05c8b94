package store_test

import (
	"encoding/json"
	"errors"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/partnerhub/partnerhub/hub"
	"github.com/partnerhub/partnerhub/hub/metrics"
	"github.com/partnerhub/partnerhub/hub/store"
	"github.com/partnerhub/partnerhub/hub/store/storetest"
)

// configView is what a transaction that applies inbound events reads of
// the configuration.
type configView struct {
	rate      int64
	source    map[string]string // options
	alpha     string            // partner id of code "alpha"
	beta      string            // of code "beta"; "" when none
	alphaName string
	rules     int
	endpoints []string // endpoints a conversion.created goes to
}

var errReadOnly = errors.New("read only")

// readConfig reads the configuration in an InProcessTx of db, rolled
// back, and returns it with the number of statements it took.
func readConfig(t *testing.T, db *store.DB, sourceID string) (configView, float64) {
	t.Helper()
	ctx := t.Context()
	counter := metrics.SQLStatements(db.Dialect())
	before := testutil.ToFloat64(counter)
	var v configView
	err := db.InProcessTx(ctx, func(tx hub.Tx) error {
		p, err := tx.GetProgram(ctx, hub.DefaultProgramID)
		if err != nil {
			return err
		}
		src, err := tx.GetSource(ctx, sourceID)
		if err != nil {
			return err
		}
		alpha, err := tx.FindPartnerByCode(ctx, hub.DefaultProgramID, "alpha")
		if err != nil {
			return err
		}
		if p, err := tx.GetPartner(ctx, hub.DefaultProgramID, alpha.ID); err != nil {
			return err
		} else {
			v.alphaName = p.Name
		}
		switch beta, err := tx.FindPartnerByCode(ctx, hub.DefaultProgramID, "beta"); {
		case err == nil:
			v.beta = beta.ID
		case !errors.Is(err, hub.ErrNotFound):
			return err
		}
		rules, err := tx.ListRules(ctx, hub.DefaultProgramID)
		if err != nil {
			return err
		}
		ds, err := tx.InsertEvent(ctx, &hub.Event{Type: hub.EventConversionCreated, Data: json.RawMessage(`{}`)})
		if err != nil {
			return err
		}
		v.rate, v.source, v.alpha, v.rules = p.DefaultCommissionBPS, src.Options, alpha.ID, len(rules)
		for _, d := range ds {
			v.endpoints = append(v.endpoints, d.EndpointID)
		}
		slices.Sort(v.endpoints)
		return errReadOnly
	})
	if !errors.Is(err, errReadOnly) {
		t.Fatalf("reading the configuration: %v", err)
	}
	return v, testutil.ToFloat64(counter) - before
}

// TestConfigCache: transactions that apply inbound events keep what they
// read of programs, sources, partners, rules and endpoints between them,
// and see every change committed before they begin, made by this process
// or another one (a second store on the same database). Changes to what
// traffic updates (a source's last verification, an endpoint's failing
// run) keep the cache. Not parallel: it counts the statements sent.
func TestConfigCache(t *testing.T) {
	for _, d := range []struct{ name, url string }{{"sqlite", ""}, {"postgres", os.Getenv("DATABASE_URL")}} {
		t.Run(d.name, func(t *testing.T) {
			if d.name == "postgres" && d.url == "" {
				t.Skip("DATABASE_URL is not set: the PostgreSQL dialect runs when it is")
			}
			testConfigCache(t, d.url)
		})
	}
}

func testConfigCache(t *testing.T, url string) {
	ctx := t.Context()
	dbs := storetest.OpenShared(t, url, 2)
	a, b := dbs[0], dbs[1]

	src := &hub.Source{Provider: "stripe", Name: "shop", Secret: "whsec_test", Options: map[string]string{"money": "shop"}}
	if err := b.CreateSource(ctx, src); err != nil {
		t.Fatal(err)
	}
	alpha := seedPartner(t, b, "alpha")
	ep1 := createEndpoint(t, b, &hub.Endpoint{Description: "first", Enabled: true})

	first, n1 := readConfig(t, a, src.ID)
	want := configView{rate: first.rate, source: map[string]string{"money": "shop"}, alpha: alpha.ID,
		alphaName: "Partner alpha", endpoints: []string{ep1.ID}}
	if !equalView(first, want) {
		t.Fatalf("first read: %+v, want %+v", first, want)
	}
	// BEGIN, the epoch, the code that matches no partner (codes come from
	// webhooks: unknown ones are not kept between transactions),
	// ROLLBACK: everything else comes from the cache.
	const warm = 4
	again, n2 := readConfig(t, a, src.ID)
	if !equalView(again, want) || n2 != warm {
		t.Fatalf("second read: %+v in %v statements (first %v), want %+v in %d", again, n2, n1, want, warm)
	}

	// Traffic writes leave the cache as it is.
	if err := b.NoteSourceVerified(ctx, src.ID, time.Now()); err != nil {
		t.Fatal(err)
	}
	if err := b.NoteSourceFailure(ctx, src.ID, "bad signature", time.Now()); err != nil {
		t.Fatal(err)
	}
	since := time.Now()
	if _, err := b.SetEndpointFailing(ctx, ep1.ID, &since); err != nil {
		t.Fatal(err)
	}
	if v, n := readConfig(t, a, src.ID); !equalView(v, want) || n != warm {
		t.Fatalf("after traffic writes: %+v in %v statements, want %+v in %d", v, n, want, warm)
	}

	// Each change made by the other store is seen by the next transaction.
	for _, c := range []struct {
		name   string
		change func()
		adjust func(*configView)
	}{
		{"program rate", func() {
			p, err := b.GetProgram(ctx, hub.DefaultProgramID)
			if err != nil {
				t.Fatal(err)
			}
			p.DefaultCommissionBPS = 1234
			if err := b.UpdateProgram(ctx, p); err != nil {
				t.Fatal(err)
			}
		}, func(v *configView) { v.rate = 1234 }},
		{"source options", func() {
			s, err := b.GetSource(ctx, src.ID)
			if err != nil {
				t.Fatal(err)
			}
			s.Options = map[string]string{"money": "presentment"}
			if err := b.UpdateSource(ctx, s); err != nil {
				t.Fatal(err)
			}
		}, func(v *configView) { v.source = map[string]string{"money": "presentment"} }},
		{"new partner code", func() {
			want.beta = seedPartner(t, b, "beta").ID
		}, func(*configView) {}},
		{"partner renamed", func() {
			alpha.Name = "Alpha Media"
			if err := b.UpdatePartner(ctx, alpha); err != nil {
				t.Fatal(err)
			}
		}, func(v *configView) { v.alphaName = "Alpha Media" }},
		{"new rule", func() {
			bps := int64(2500)
			if err := b.CreateRule(ctx, &hub.Rule{Name: "alpha", BPS: &bps, PartnerID: alpha.ID}); err != nil {
				t.Fatal(err)
			}
		}, func(v *configView) { v.rules = 1 }},
		{"new endpoint", func() {
			ep2 := createEndpoint(t, b, &hub.Endpoint{Description: "second", Enabled: true})
			want.endpoints = append(want.endpoints, ep2.ID)
			slices.Sort(want.endpoints)
		}, func(*configView) {}},
		{"endpoint disabled", func() {
			ep1.Enabled = false
			if err := b.UpdateEndpoint(ctx, ep1); err != nil {
				t.Fatal(err)
			}
			want.endpoints = slices.DeleteFunc(want.endpoints, func(id string) bool { return id == ep1.ID })
		}, func(*configView) {}},
		{"hand-written update from another search_path", func() {
			if b.Dialect() != "postgres" {
				if _, err := b.SQL().ExecContext(ctx, `UPDATE programs SET default_commission_bps = 777`); err != nil {
					t.Fatal(err)
				}
				return
			}
			conn, err := b.SQL().Conn(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			var schema string
			if err := conn.QueryRowContext(ctx, `SELECT current_schema()`).Scan(&schema); err != nil {
				t.Fatal(err)
			}
			if _, err := conn.ExecContext(ctx, `SET search_path TO pg_catalog`); err != nil {
				t.Fatal(err)
			}
			if _, err := conn.ExecContext(ctx, `UPDATE "`+schema+`".programs SET default_commission_bps = 777`); err != nil {
				t.Fatalf("updating the program by hand: %v", err)
			}
			if _, err := conn.ExecContext(ctx, `RESET search_path`); err != nil {
				t.Fatal(err)
			}
		}, func(v *configView) { v.rate = 777 }},
	} {
		c.change()
		c.adjust(&want)
		v, n := readConfig(t, a, src.ID)
		if !equalView(v, want) {
			t.Fatalf("after %s: %+v, want %+v", c.name, v, want)
		}
		if n <= warm {
			t.Errorf("after %s: read in %v statements: the cache was not renewed", c.name, n)
		}
	}
}

func equalView(a, b configView) bool {
	return a.rate == b.rate && a.alpha == b.alpha && a.beta == b.beta && a.alphaName == b.alphaName &&
		a.rules == b.rules && slices.Equal(a.endpoints, b.endpoints) &&
		len(a.source) == len(b.source) && a.source["money"] == b.source["money"]
}
