package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// TestOpenAPIDocument: the document served at /api/v1/openapi.json is
// OpenAPI 3.1, describes every route the server has under /api/ and no
// other, and is consistent in itself: unique operation ids, references
// that resolve, declared path parameters, the Idempotency-Key header on
// every POST, and the roles of the role policy.
func TestOpenAPIDocument(t *testing.T) {
	h := startHub(t, testEnv(t), Options{})
	res, err := http.Get(h.base + "/api/v1/openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusOK || !strings.HasPrefix(res.Header.Get("Content-Type"), "application/json") {
		t.Fatalf("GET /api/v1/openapi.json without a key: %d %q, want 200 application/json", res.StatusCode, res.Header.Get("Content-Type"))
	}
	var doc map[string]any
	if err := json.Unmarshal(body, &doc); err != nil {
		t.Fatalf("the document is not JSON: %v", err)
	}
	if v, _ := doc["openapi"].(string); !regexp.MustCompile(`^3\.1\.\d+$`).MatchString(v) {
		t.Errorf("openapi = %q, want 3.1.x", v)
	}
	base := ""
	if servers, _ := doc["servers"].([]any); len(servers) > 0 {
		s, _ := servers[0].(map[string]any)
		base, _ = s["url"].(string)
	}
	if !strings.HasPrefix(base, "/api/") {
		t.Fatalf("servers[0].url = %q, want the API's base path", base)
	}

	ops := documentedOperations(t, doc, base)
	var documented []string
	for k := range ops {
		documented = append(documented, k)
	}
	sort.Strings(documented)
	served := servedRoutes(h)
	for _, r := range served {
		if _, ok := ops[r]; !ok {
			t.Errorf("route %s is not described in hub/openapi/openapi.json", r)
		}
	}
	for _, r := range documented {
		if !slices.Contains(served, r) {
			t.Errorf("hub/openapi/openapi.json describes %s, which the server does not have", r)
		}
	}

	ids := map[string]string{}
	for _, r := range documented {
		op := ops[r]
		id, _ := op.op["operationId"].(string)
		switch {
		case id == "":
			t.Errorf("%s has no operationId", r)
		case ids[id] != "":
			t.Errorf("operationId %s is used by %s and %s", id, ids[id], r)
		default:
			ids[id] = r
		}
		checkPathParams(t, doc, r, op)
		if strings.HasPrefix(r, "POST ") && !hasParam(doc, op, "header", "Idempotency-Key") {
			t.Errorf("%s does not document the Idempotency-Key header", r)
		}
		checkRoles(t, r, op)
		if _, ok := op.op["responses"].(map[string]any); !ok {
			t.Errorf("%s has no responses", r)
		}
	}
	checkRefs(t, doc, doc, "#")
}

// operation is one operation of the document with its path item.
type operation struct {
	item map[string]any
	op   map[string]any
	// template is the path template with the servers' base path.
	template string
}

var httpMethods = []string{"get", "put", "post", "delete", "options", "head", "patch", "trace"}

// documentedOperations returns the document's operations keyed by
// "METHOD /path/{param}", the base path included.
func documentedOperations(t *testing.T, doc map[string]any, base string) map[string]operation {
	t.Helper()
	paths, _ := doc["paths"].(map[string]any)
	if len(paths) == 0 {
		t.Fatal("the document has no paths")
	}
	out := map[string]operation{}
	for p, v := range paths {
		item, _ := v.(map[string]any)
		for _, m := range httpMethods {
			op, ok := item[m].(map[string]any)
			if !ok {
				continue
			}
			tmpl := strings.TrimSuffix(base, "/") + p
			out[strings.ToUpper(m)+" "+tmpl] = operation{item: item, op: op, template: tmpl}
		}
	}
	return out
}

var echoParam = regexp.MustCompile(`:([A-Za-z0-9_]+)`)

// servedRoutes returns the server's routes under /api/ as "METHOD
// /path/{param}", sorted.
func servedRoutes(h *hubUnderTest) []string {
	var out []string
	for _, r := range h.app.echo.Routes() {
		if !strings.HasPrefix(r.Path, "/api/") || strings.HasPrefix(r.Method, "echo_") {
			continue
		}
		out = append(out, r.Method+" "+echoParam.ReplaceAllString(r.Path, "{$1}"))
	}
	sort.Strings(out)
	return slices.Compact(out)
}

var pointerUnescape = strings.NewReplacer("~1", "/", "~0", "~")

// resolve follows a local reference ("#/components/…"); it returns nil
// when the reference does not resolve.
func resolve(doc map[string]any, ref string) any {
	rest, ok := strings.CutPrefix(ref, "#")
	if !ok {
		return nil
	}
	var cur any = doc
	if rest == "" {
		return cur
	}
	if !strings.HasPrefix(rest, "/") {
		return nil
	}
	for _, tok := range strings.Split(rest[1:], "/") {
		tok = pointerUnescape.Replace(tok)
		switch c := cur.(type) {
		case map[string]any:
			v, ok := c[tok]
			if !ok {
				return nil
			}
			cur = v
		case []any:
			i, err := strconv.Atoi(tok)
			if err != nil || i < 0 || i >= len(c) {
				return nil
			}
			cur = c[i]
		default:
			return nil
		}
	}
	return cur
}

// deref returns v, or what it refers to when it is a reference.
func deref(doc map[string]any, v any) map[string]any {
	m, _ := v.(map[string]any)
	for range 10 {
		ref, ok := m["$ref"].(string)
		if !ok {
			break
		}
		m, _ = resolve(doc, ref).(map[string]any)
	}
	return m
}

// checkRefs reports every $ref under v that does not resolve inside the
// document.
func checkRefs(t *testing.T, doc map[string]any, v any, at string) {
	t.Helper()
	switch x := v.(type) {
	case map[string]any:
		if ref, ok := x["$ref"].(string); ok && resolve(doc, ref) == nil {
			t.Errorf("%s: $ref %q does not resolve inside the document", at, ref)
		}
		for k, c := range x {
			checkRefs(t, doc, c, at+"/"+pointerEscape.Replace(k))
		}
	case []any:
		for i, c := range x {
			checkRefs(t, doc, c, fmt.Sprintf("%s/%d", at, i))
		}
	}
}

var pointerEscape = strings.NewReplacer("~", "~0", "/", "~1")

// params returns the parameters of an operation: its own and its path
// item's, references resolved.
func params(doc map[string]any, op operation) []map[string]any {
	var out []map[string]any
	for _, src := range []map[string]any{op.item, op.op} {
		list, _ := src["parameters"].([]any)
		for _, p := range list {
			if m := deref(doc, p); m != nil {
				out = append(out, m)
			}
		}
	}
	return out
}

func hasParam(doc map[string]any, op operation, in, name string) bool {
	return slices.ContainsFunc(params(doc, op), func(p map[string]any) bool {
		n, _ := p["name"].(string)
		return p["in"] == in && strings.EqualFold(n, name)
	})
}

var templateParam = regexp.MustCompile(`\{([^}]+)\}`)

// checkPathParams reports path parameters of the template that are not
// declared (required), and declared ones that are not in the template.
func checkPathParams(t *testing.T, doc map[string]any, route string, op operation) {
	t.Helper()
	var inTemplate []string
	for _, m := range templateParam.FindAllStringSubmatch(op.template, -1) {
		inTemplate = append(inTemplate, m[1])
		if !slices.ContainsFunc(params(doc, op), func(p map[string]any) bool {
			return p["in"] == "path" && p["name"] == m[1] && p["required"] == true
		}) {
			t.Errorf("%s: path parameter %s is not declared (in: path, required: true)", route, m[1])
		}
	}
	for _, p := range params(doc, op) {
		if n, _ := p["name"].(string); p["in"] == "path" && !slices.Contains(inTemplate, n) {
			t.Errorf("%s declares path parameter %s, which its path does not have", route, n)
		}
	}
}

// checkRoles compares the roles an operation documents (x-partnerhub-roles
// and its description) with the role policy of the access test, and checks
// that public operations, and only they, need no API key.
func checkRoles(t *testing.T, route string, op operation) {
	t.Helper()
	raw, ok := op.op["x-partnerhub-roles"].([]any)
	if !ok {
		t.Errorf("%s has no x-partnerhub-roles", route)
		return
	}
	roles := make([]string, 0, len(raw))
	for _, r := range raw {
		s, _ := r.(string)
		roles = append(roles, s)
	}
	desc, _ := op.op["description"].(string)
	sec, overridden := op.op["security"].([]any)
	if len(roles) == 0 {
		if !overridden || len(sec) != 0 {
			t.Errorf("%s is public but does not say so with security: []", route)
		}
		if !strings.Contains(desc, "no API key") {
			t.Errorf("%s: the description does not say it needs no API key", route)
		}
	} else {
		if overridden && len(sec) == 0 {
			t.Errorf("%s needs a key but its security is empty", route)
		}
		if !strings.Contains(desc, "Roles: "+strings.Join(roles, ", ")+".") {
			t.Errorf("%s: the description does not name the roles %v", route, roles)
		}
	}
	method, tmpl, _ := strings.Cut(route, " ")
	want, ok := routePolicy[method+" "+templateParam.ReplaceAllString(tmpl, ":$1")]
	if !ok {
		return // TestRouteRoles reports routes missing from the policy
	}
	if !slices.Equal(sorted(roles), sorted(want)) {
		t.Errorf("%s documents roles %v; the role policy says %v", route, roles, want)
	}
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}
