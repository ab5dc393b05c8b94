package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/partnerhub/partnerhub/hub"
)

// Who may use each route of the API. Every route the server has must be
// listed here, and nothing else: the test fails on a route added without
// deciding who may call it.
var (
	rolesAdmin          = []string{hub.RoleAdmin}
	rolesOps            = []string{hub.RoleAdmin, hub.RoleOps}
	rolesStaff          = []string{hub.RoleAdmin, hub.RoleOps, hub.RoleViewer}
	rolesStaffOrPartner = []string{hub.RoleAdmin, hub.RoleOps, hub.RoleViewer, hub.RolePartner}
	rolesAdminOrPartner = []string{hub.RoleAdmin, hub.RolePartner}
	rolesOpsOrPartner   = []string{hub.RoleAdmin, hub.RoleOps, hub.RolePartner}
	// rolesPublic: no key needed.
	rolesPublic = []string{}
)

var routePolicy = map[string][]string{
	"GET /api/v1/program":                       rolesStaff,
	"PATCH /api/v1/program":                     rolesAdmin,
	"POST /api/v1/programs":                     rolesAdmin,
	"GET /api/v1/programs":                      rolesAdmin,
	"POST /api/v1/sources":                      rolesAdmin,
	"GET /api/v1/sources":                       rolesStaff,
	"GET /api/v1/sources/:id":                   rolesStaff,
	"PATCH /api/v1/sources/:id":                 rolesAdmin,
	"POST /api/v1/partners":                     rolesAdmin,
	"GET /api/v1/partners":                      rolesStaff,
	"GET /api/v1/partners/:id":                  rolesStaffOrPartner,
	"PATCH /api/v1/partners/:id":                rolesAdmin,
	"GET /api/v1/conversions":                   rolesStaffOrPartner,
	"GET /api/v1/conversions/:id":               rolesStaffOrPartner,
	"POST /api/v1/conversions/:id/attribution":  rolesAdmin,
	"GET /api/v1/refunds":                       rolesStaffOrPartner,
	"GET /api/v1/commissions":                   rolesStaffOrPartner,
	"GET /api/v1/commissions/summary":           rolesStaffOrPartner,
	"POST /api/v1/commissions/:id/release":      rolesAdmin,
	"POST /api/v1/commissions/:id/reject":       rolesAdmin,
	"GET /api/v1/inbound-events":                rolesStaff,
	"GET /api/v1/inbound-events/:id":            rolesStaff,
	"POST /api/v1/inbound-events/:id/reprocess": rolesOps,
	"POST /api/v1/inbound-events/reprocess":     rolesOps,
	"POST /api/v1/sources/:id/backfill":         rolesOps,
	"POST /api/v1/sources/:id/trigger":          rolesAdmin,
	"GET /api/v1/audit-log":                     rolesStaff,
	"POST /api/v1/api-keys":                     rolesAdmin,
	"GET /api/v1/me":                            rolesStaffOrPartner,
	"GET /api/v1/api-keys":                      rolesAdmin,
	"GET /api/v1/api-keys/:id":                  rolesAdmin,
	"DELETE /api/v1/api-keys/:id":               rolesAdmin,
	"POST /api/v1/promo-codes":                  rolesAdmin,
	"GET /api/v1/promo-codes":                   rolesStaff,
	"DELETE /api/v1/promo-codes/:id":            rolesAdmin,
	"POST /api/v1/rules":                        rolesAdmin,
	"GET /api/v1/rules":                         rolesStaff,
	"DELETE /api/v1/rules/:id":                  rolesAdmin,
	"GET /api/v1/clicks":                        rolesStaffOrPartner,
	"POST /api/v1/endpoints":                    rolesAdminOrPartner,
	"GET /api/v1/endpoints":                     rolesStaffOrPartner,
	"GET /api/v1/endpoints/:id":                 rolesStaffOrPartner,
	"PATCH /api/v1/endpoints/:id":               rolesAdminOrPartner,
	"DELETE /api/v1/endpoints/:id":              rolesAdminOrPartner,
	"POST /api/v1/endpoints/:id/rotate-secret":  rolesAdminOrPartner,
	"POST /api/v1/endpoints/:id/enable":         rolesOpsOrPartner,
	"POST /api/v1/endpoints/:id/ping":           rolesOpsOrPartner,
	"GET /api/v1/deliveries":                    rolesStaff,
	"POST /api/v1/deliveries/retry":             rolesOps,
	"GET /api/v1/deliveries/:id":                rolesStaff,
	"POST /api/v1/deliveries/:id/retry":         rolesOps,
	"GET /api/v1/events":                        rolesStaff,
	"POST /api/v1/events/:id/replay":            rolesOps,
	"POST /api/v1/payouts":                      rolesAdmin,
	"GET /api/v1/payouts":                       rolesStaff,
	"GET /api/v1/payouts/:id":                   rolesStaff,
	"GET /api/v1/payouts/:id/export.csv":        rolesStaff,
	"POST /api/v1/payouts/:id/confirm":          rolesAdmin,
	"GET /api/v1/reports/partners":              rolesStaffOrPartner,
	"GET /api/v1/schemas":                       rolesPublic,
	"GET /api/v1/schemas/:type":                 rolesPublic,
	"GET /api/v1/openapi.json":                  rolesPublic,
}

// accessHub is a hub with one key of every role; the partner key belongs
// to partner "alice".
type accessHub struct {
	*hubUnderTest
	keys    map[string]string // role → key
	aliceID string
	bobID   string
}

func newAccessHub(t *testing.T) *accessHub {
	h := &accessHub{hubUnderTest: startHub(t, testEnv(t), Options{}), keys: map[string]string{hub.RoleAdmin: testAdminKey}}
	var alice, bob map[string]any
	if st := h.api("POST", "/partners", map[string]any{"name": "Alice", "code": "alice"}, &alice); st != 201 {
		t.Fatalf("creating alice: %d %v", st, alice)
	}
	if st := h.api("POST", "/partners", map[string]any{"name": "Bob", "code": "bob"}, &bob); st != 201 {
		t.Fatalf("creating bob: %d %v", st, bob)
	}
	h.aliceID, h.bobID = alice["id"].(string), bob["id"].(string)
	for _, role := range []string{hub.RoleOps, hub.RoleViewer, hub.RolePartner} {
		in := map[string]any{"name": role + " key", "role": role}
		if role == hub.RolePartner {
			in["partner_id"] = h.aliceID
		}
		var k map[string]any
		if st := h.api("POST", "/api-keys", in, &k); st != 201 {
			t.Fatalf("creating %s key: %d %v", role, st, k)
		}
		h.keys[role], _ = k["key"].(string)
		if !strings.HasPrefix(h.keys[role], "phk_") {
			t.Fatalf("created key = %v, want a phk_ secret", k)
		}
	}
	return h
}

// call sends a request with key ("" for none) and returns the status and
// body.
func (h *accessHub) call(key, method, path string, body any, header ...string) (int, []byte, http.Header) {
	h.t.Helper()
	var r io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		r = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, h.base+path, r)
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		h.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, b, res.Header
}

// TestRouteRoles sends every route of the server with every role and
// without a key: a role the policy does not name gets 403, a named one
// gets past authorization, and no key gets 401.
func TestRouteRoles(t *testing.T) {
	h := newAccessHub(t)
	var routes []string
	for _, r := range h.app.echo.Routes() {
		if !strings.HasPrefix(r.Path, "/api/") || strings.HasPrefix(r.Method, "echo_") {
			continue
		}
		routes = append(routes, r.Method+" "+r.Path)
	}
	sort.Strings(routes)
	routes = slices.Compact(routes)
	for _, r := range routes {
		if _, ok := routePolicy[r]; !ok {
			t.Errorf("route %s is not in the role policy: decide which roles may call it", r)
		}
	}
	for r := range routePolicy {
		if !slices.Contains(routes, r) {
			t.Errorf("the role policy lists %s, which the server does not have", r)
		}
	}
	for _, r := range routes {
		allowed, ok := routePolicy[r]
		if !ok {
			continue
		}
		method, pattern, _ := strings.Cut(r, " ")
		path := strings.NewReplacer(":id", "none_0000", ":type", "commission.created").Replace(pattern)
		var body any
		if method != http.MethodGet && method != http.MethodDelete {
			body = map[string]any{}
		}
		if len(allowed) == 0 {
			if st, b, _ := h.call("", method, path, body); st == 401 || st == 403 {
				t.Errorf("%s without a key: %d %s, want it public", r, st, b)
			}
			continue
		}
		if st, b, hdr := h.call("", method, path, body); st != 401 || !strings.HasPrefix(hdr.Get("WWW-Authenticate"), "Bearer") {
			t.Errorf("%s without a key: %d %s, want 401 with WWW-Authenticate", r, st, b)
		}
		for _, role := range hub.Roles {
			st, b, hdr := h.call(h.keys[role], method, path, body)
			switch {
			case slices.Contains(allowed, role) && (st == 401 || st == 403):
				t.Errorf("%s as %s: %d %s, want it allowed", r, role, st, b)
			case !slices.Contains(allowed, role) && st != 403:
				t.Errorf("%s as %s: %d %s, want 403", r, role, st, b)
			case st == 403 && hdr.Get("Content-Type") != "application/problem+json":
				t.Errorf("%s as %s: 403 as %q, want problem+json", r, role, hdr.Get("Content-Type"))
			}
		}
	}
}

// TestPartnerKeySeesOnlyItsOwn: a partner key reads its partner's
// conversions and commissions and manages its own endpoints, and nothing
// of another partner's.
func TestPartnerKeySeesOnlyItsOwn(t *testing.T) {
	h := newAccessHub(t)
	secret := "whsec_test_" + randHex(8)
	var src map[string]any
	if st := h.api("POST", "/sources", map[string]any{"provider": "stripe", "secret": secret}, &src); st != 201 {
		t.Fatalf("creating source: %d %v", st, src)
	}
	srcID := src["id"].(string)
	for i, ref := range []string{"alice", "bob", "alice"} {
		id := randHex(6)
		if st, out := h.postStripe(srcID, secret, checkoutCompleted("evt_"+id, "cs_"+id, "pi_"+id, ref, int64(1000*(i+1)), 0)); st != 200 {
			t.Fatalf("posting webhook: %d %v", st, out)
		}
	}
	var all hub.List[map[string]any]
	waitFor(t, 20*time.Second, "three commissions", func() bool {
		h.api("GET", "/commissions", nil, &all)
		return len(all.Data) == 3
	})
	var convs hub.List[map[string]any]
	h.api("GET", "/conversions", nil, &convs)
	var bobConv string
	for _, c := range convs.Data {
		if c["partner_id"] == h.bobID {
			bobConv = c["id"].(string)
		}
	}
	if bobConv == "" {
		t.Fatalf("no conversion of bob in %v", convs.Data)
	}

	pk := h.keys[hub.RolePartner]
	// GET /me: the key says who it is, and a partner key its partner.
	st, b, _ := h.call(pk, "GET", "/api/v1/me", nil)
	var me struct {
		Key     map[string]any `json:"key"`
		Program map[string]any `json:"program"`
		Partner map[string]any `json:"partner"`
	}
	if err := json.Unmarshal(b, &me); st != 200 || err != nil || me.Key["role"] != "partner" || me.Partner["code"] != "alice" ||
		me.Program["id"] != hub.DefaultProgramID || strings.Contains(string(b), pk) {
		t.Errorf("GET /me as alice: %d %s", st, b)
	}
	if st, b, _ := h.call(testAdminKey, "GET", "/api/v1/me", nil); st != 200 || !strings.Contains(string(b), `"role":"admin"`) || strings.Contains(string(b), `"partner"`) {
		t.Errorf("GET /me as admin: %d %s", st, b)
	}
	for _, path := range []string{"/api/v1/conversions", "/api/v1/commissions", "/api/v1/conversions?partner_id=" + h.bobID} {
		st, b, _ := h.call(pk, "GET", path, nil)
		var l hub.List[map[string]any]
		_ = json.Unmarshal(b, &l)
		if st != 200 || len(l.Data) != 2 {
			t.Errorf("GET %s as alice: %d with %d items, want 200 with alice's 2", path, st, len(l.Data))
		}
		for _, x := range l.Data {
			if x["partner_id"] != h.aliceID {
				t.Errorf("GET %s as alice returned %v", path, x)
			}
		}
	}
	if st, b, _ := h.call(pk, "GET", "/api/v1/conversions/"+bobConv, nil); st != 404 {
		t.Errorf("bob's conversion as alice: %d %s, want 404", st, b)
	}
	if st, b, _ := h.call(pk, "GET", "/api/v1/partners/"+h.bobID, nil); st != 404 {
		t.Errorf("bob's partner record as alice: %d %s, want 404", st, b)
	}
	st, b, _ = h.call(pk, "GET", "/api/v1/commissions/summary", nil)
	if st != 200 || !strings.Contains(string(b), `"net_minor":400`) {
		// 10 % default of 1000 + 3000 on alice's two sales.
		t.Errorf("summary as alice: %d %s, want net 400", st, b)
	}

	// Endpoints: alice's key creates one scoped to alice, cannot claim
	// bob's scope, and does not see the program's or bob's endpoints.
	var bobEP map[string]any
	if st := h.api("POST", "/endpoints", map[string]any{"url": "https://bob.example.com/hook", "partner_id": h.bobID}, &bobEP); st != 201 {
		t.Fatalf("creating bob's endpoint: %d %v", st, bobEP)
	}
	if st := h.api("POST", "/endpoints", map[string]any{"url": "https://merchant.example.com/hook"}, nil); st != 201 {
		t.Fatalf("creating the program's endpoint: %d", st)
	}
	st, b, _ = h.call(pk, "POST", "/api/v1/endpoints", map[string]any{"url": "https://alice.example.com/hook", "partner_id": h.bobID})
	if st != 422 || !strings.Contains(string(b), "partner_id") {
		t.Errorf("alice creating an endpoint for bob: %d %s, want 422 on partner_id", st, b)
	}
	st, b, _ = h.call(pk, "POST", "/api/v1/endpoints", map[string]any{"url": "https://alice.example.com/hook"})
	var own map[string]any
	_ = json.Unmarshal(b, &own)
	if st != 201 || own["partner_id"] != h.aliceID || !strings.HasPrefix(own["secret"].(string), "whsec_") {
		t.Fatalf("alice creating her endpoint: %d %s", st, b)
	}
	st, b, _ = h.call(pk, "GET", "/api/v1/endpoints", nil)
	var eps hub.List[map[string]any]
	_ = json.Unmarshal(b, &eps)
	if st != 200 || len(eps.Data) != 1 || eps.Data[0]["id"] != own["id"] {
		t.Errorf("alice listing endpoints: %d %s, want only her own", st, b)
	}
	for _, m := range []string{"GET", "PATCH", "DELETE"} {
		if st, b, _ := h.call(pk, m, "/api/v1/endpoints/"+bobEP["id"].(string), map[string]any{}); st != 404 {
			t.Errorf("%s bob's endpoint as alice: %d %s, want 404", m, st, b)
		}
	}
	if st, b, _ := h.call(pk, "POST", "/api/v1/endpoints/"+bobEP["id"].(string)+"/rotate-secret", map[string]any{}); st != 404 {
		t.Errorf("rotating bob's endpoint secret as alice: %d %s, want 404", st, b)
	}
	if st, b, _ := h.call(pk, "PATCH", "/api/v1/endpoints/"+own["id"].(string), map[string]any{"description": "mine"}); st != 200 {
		t.Errorf("alice updating her endpoint: %d %s", st, b)
	}
}

// TestIdempotencyKey: a POST retried with the same Idempotency-Key gets
// the first answer and creates nothing more; the key cannot be reused for
// another request.
func TestIdempotencyKey(t *testing.T) {
	h := newAccessHub(t)
	body := map[string]any{"name": "Carol", "code": "carol"}
	st1, b1, _ := h.call(testAdminKey, "POST", "/api/v1/partners", body, "Idempotency-Key", "create-carol-1")
	st2, b2, hdr := h.call(testAdminKey, "POST", "/api/v1/partners", body, "Idempotency-Key", "create-carol-1")
	if st1 != 201 || st2 != 201 || !bytes.Equal(b1, b2) || hdr.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("retry: first %d %s, second %d %s (replayed %q); want the same 201 replayed", st1, b1, st2, b2, hdr.Get("Idempotent-Replayed"))
	}
	var partners hub.List[map[string]any]
	h.api("GET", "/partners", nil, &partners)
	n := 0
	for _, p := range partners.Data {
		if p["code"] == "carol" {
			n++
		}
	}
	if n != 1 {
		t.Errorf("%d partners named carol after a retried POST, want 1", n)
	}
	st, b, _ := h.call(testAdminKey, "POST", "/api/v1/partners", map[string]any{"name": "Dave", "code": "dave"}, "Idempotency-Key", "create-carol-1")
	if st != 422 || !strings.Contains(string(b), "Idempotency-Key") {
		t.Errorf("key reused for another body: %d %s, want 422 naming Idempotency-Key", st, b)
	}
	// A 4xx answer is kept too: the same invalid request gets the same
	// answer; a new key runs the request again.
	st1, b1, _ = h.call(testAdminKey, "POST", "/api/v1/partners", map[string]any{"name": "Carol again", "code": "carol"}, "Idempotency-Key", "dup-1")
	st2, _, hdr = h.call(testAdminKey, "POST", "/api/v1/partners", map[string]any{"name": "Carol again", "code": "carol"}, "Idempotency-Key", "dup-1")
	if st1 != 409 || st2 != 409 || hdr.Get("Idempotent-Replayed") != "true" {
		t.Errorf("conflicting create: %d %s then %d (replayed %q), want 409 twice, replayed", st1, b1, st2, hdr.Get("Idempotent-Replayed"))
	}
	if st, b, _ := h.call(testAdminKey, "POST", "/api/v1/partners", body, "Idempotency-Key", strings.Repeat("k", 256)); st != 422 {
		t.Errorf("256-character key: %d %s, want 422", st, b)
	}
	// Keys are per program: another program's key space is its own.
	var prog map[string]any
	if st := h.api("POST", "/programs", map[string]any{"name": "Second shop"}, &prog); st != 201 {
		t.Fatalf("creating program: %d %v", st, prog)
	}
	other := prog["admin_key"].(map[string]any)["key"].(string)
	if st, b, hdr := h.call(other, "POST", "/api/v1/partners", body, "Idempotency-Key", "create-carol-1"); st != 201 || hdr.Get("Idempotent-Replayed") != "" {
		t.Errorf("same key in another program: %d %s replayed=%q, want a fresh 201", st, b, hdr.Get("Idempotent-Replayed"))
	}
}

// TestProgramsAndKeys: programs are isolated from each other; a revoked
// key stops working at once, with a clear answer; ops and viewer keys
// cannot change configuration; the audit log names the key.
func TestProgramsAndKeys(t *testing.T) {
	h := newAccessHub(t)
	var prog map[string]any
	if st := h.api("POST", "/programs", map[string]any{"name": "Second shop"}, &prog); st != 201 {
		t.Fatalf("creating program: %d %v", st, prog)
	}
	other := prog["admin_key"].(map[string]any)["key"].(string)
	st, b, _ := h.call(other, "GET", "/api/v1/partners/"+h.aliceID, nil)
	if st != 404 {
		t.Errorf("the default program's partner read from the second program: %d %s, want 404", st, b)
	}
	st, b, _ = h.call(other, "GET", "/api/v1/partners", nil)
	if st != 200 || !strings.Contains(string(b), `"data":[]`) {
		t.Errorf("second program's partners: %d %s, want none", st, b)
	}
	if st, b, _ := h.call(other, "POST", "/api/v1/programs", map[string]any{"name": "Third"}); st != 403 {
		t.Errorf("second program creating a program: %d %s, want 403", st, b)
	}

	// Revocation.
	var k map[string]any
	if st := h.api("POST", "/api-keys", map[string]any{"name": "ci", "role": "viewer"}, &k); st != 201 {
		t.Fatalf("creating key: %d", st)
	}
	key := k["key"].(string)
	if st, _, _ := h.call(key, "GET", "/api/v1/partners", nil); st != 200 {
		t.Fatalf("new viewer key: %d", st)
	}
	if st := h.api("DELETE", "/api-keys/"+k["id"].(string), nil, nil); st != 200 {
		t.Fatalf("revoking: %d", st)
	}
	st, b, _ = h.call(key, "GET", "/api/v1/partners", nil)
	if st != 401 || !strings.Contains(string(b), "revoked") {
		t.Errorf("revoked key: %d %s, want 401 saying revoked", st, b)
	}
	var keys hub.List[map[string]any]
	h.api("GET", "/api-keys", nil, &keys)
	for _, x := range keys.Data {
		if _, leaked := x["key"]; leaked {
			t.Errorf("key listing shows a secret: %v", x)
		}
		if x["id"] == k["id"] && x["revoked_at"] == nil {
			t.Errorf("revoked key listed without revoked_at: %v", x)
		}
	}
	if st, b, _ := h.call(testAdminKey, "POST", "/api/v1/api-keys", map[string]any{"name": "x", "role": "root"}); st != 422 || !strings.Contains(string(b), `"role"`) {
		t.Errorf("unknown role: %d %s, want 422 on role", st, b)
	}
	if st, b, _ := h.call(testAdminKey, "POST", "/api/v1/api-keys", map[string]any{"name": "x", "role": "partner"}); st != 422 || !strings.Contains(string(b), `"partner_id"`) {
		t.Errorf("partner key without partner: %d %s, want 422 on partner_id", st, b)
	}

	// Audit: who did what, without secrets.
	var audit hub.List[map[string]any]
	h.api("GET", "/audit-log", nil, &audit)
	var sawRevoke bool
	for _, e := range audit.Data {
		if e["action"] == "api_key.revoke" && e["resource_id"] == k["id"] && e["key_id"] == "key_admin_env" {
			sawRevoke = true
		}
		if strings.Contains(string(mustJSON(e)), key) {
			t.Errorf("audit entry holds a key secret: %v", e)
		}
	}
	if !sawRevoke {
		t.Errorf("no audit entry for the revocation in %v", audit.Data)
	}
}

// TestSourceSecretRotation: PATCH /sources/{id} with a new secret keeps
// the old one verifying until the next change.
func TestSourceSecretRotation(t *testing.T) {
	h := newAccessHub(t)
	oldSecret := "whsec_old_" + randHex(8)
	var src map[string]any
	if st := h.api("POST", "/sources", map[string]any{"provider": "stripe", "secret": oldSecret}, &src); st != 201 {
		t.Fatalf("creating source: %d %v", st, src)
	}
	id := src["id"].(string)
	// Creating a source says how to connect it: the URL, the events, the
	// secret's place.
	steps, _ := src["setup"].([]any)
	if wh, _ := src["webhook_url"].(string); len(steps) < 3 || !strings.Contains(fmt.Sprint(steps), wh) ||
		!strings.Contains(fmt.Sprint(steps), "checkout.session.completed") || !strings.Contains(fmt.Sprint(steps), "Signing secret") {
		t.Errorf("source setup steps = %v, want the webhook URL, the events and where the secret is", steps)
	}
	// The source is now cached by /in.
	wid := randHex(6)
	if st, out := h.postStripe(id, oldSecret, checkoutCompleted("evt_"+wid, "cs_"+wid, "pi_"+wid, "alice", 1000, 0)); st != 200 {
		t.Fatalf("webhook before the rotation: %d %v", st, out)
	}
	newSecret := "whsec_new_" + randHex(8)
	var patched map[string]any
	if st := h.api("PATCH", "/sources/"+id, map[string]any{"secret": newSecret, "name": "Stripe (rotated)"}, &patched); st != 200 || patched["name"] != "Stripe (rotated)" {
		t.Fatalf("patching source: %d %v", st, patched)
	}
	if strings.Contains(string(mustJSON(patched)), newSecret) {
		t.Fatalf("PATCH answer shows the secret: %v", patched)
	}
	for _, sec := range []string{newSecret, oldSecret} {
		rid := randHex(6)
		if st, out := h.postStripe(id, sec, checkoutCompleted("evt_"+rid, "cs_"+rid, "pi_"+rid, "alice", 1000, 0)); st != 200 {
			t.Errorf("webhook signed with %s secret: %d %v", sec[:10], st, out)
		}
	}
	if st := h.api("PATCH", "/sources/"+id, map[string]any{"keep_previous": false}, nil); st != 200 {
		t.Fatalf("dropping the previous secret: %d", st)
	}
	// Sources are cached by /in for up to 2 s: the removed secret stops
	// verifying within that.
	time.Sleep(2100 * time.Millisecond)
	rid := randHex(6)
	if st, _ := h.postStripe(id, oldSecret, checkoutCompleted("evt_"+rid, "cs_"+rid, "pi_"+rid, "alice", 1000, 0)); st != 401 {
		t.Errorf("old secret 2 s after keep_previous=false: %d, want 401", st)
	}
	// The source shows that the connection works, and why the last
	// webhook was refused.
	waitFor(t, 10*time.Second, "the source's connection status", func() bool {
		var got map[string]any
		h.api("GET", "/sources/"+id, nil, &got)
		failure, _ := got["last_failure"].(string)
		return got["last_verified_at"] != nil && got["last_failure_at"] != nil && strings.Contains(failure, "signature")
	})
}

func mustJSON(v any) []byte {
	b, _ := json.Marshal(v)
	return b
}
