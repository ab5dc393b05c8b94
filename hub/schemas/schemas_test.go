package schemas_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/labstack/echo/v4"
	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/partnerhub/partnerhub/hub"
	"github.com/partnerhub/partnerhub/hub/schemas"
)

// catalog is the outbound event catalog of DESIGN.md.
var catalog = []string{
	hub.EventCommissionApproved, hub.EventCommissionCreated, hub.EventCommissionPaid, hub.EventCommissionReversed,
	hub.EventConversionCreated, hub.EventConversionDisputed, hub.EventConversionRefunded,
	hub.EventEndpointDisabled, hub.EventPing,
}

func TestEveryEventTypeHasASchema(t *testing.T) {
	if diff := cmp.Diff(catalog, schemas.Types()); diff != "" {
		t.Errorf("schema files (-catalog +files):\n%s", diff)
	}
}

func compile(t *testing.T) map[string]*jsonschema.Schema {
	t.Helper()
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	out := map[string]*jsonschema.Schema{}
	for _, typ := range schemas.Types() {
		b, _ := schemas.Schema(typ)
		doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
		if err != nil {
			t.Fatalf("%s: %v", typ, err)
		}
		u := "https://partnerhub.invalid/schemas/" + typ + ".json"
		if err := c.AddResource(u, doc); err != nil {
			t.Fatalf("%s: %v", typ, err)
		}
		if out[typ], err = c.Compile(u); err != nil {
			t.Fatalf("compiling %s: %v", typ, err)
		}
	}
	return out
}

// TestSchemasAgree: each file names its type, and a definition shared by
// several files ($defs of the same name) is the same everywhere.
func TestSchemasAgree(t *testing.T) {
	defs := map[string]any{}
	from := map[string]string{}
	for _, typ := range schemas.Types() {
		b, _ := schemas.Schema(typ)
		var s struct {
			Schema     string                    `json:"$schema"`
			Title      string                    `json:"title"`
			Properties map[string]map[string]any `json:"properties"`
			Defs       map[string]any            `json:"$defs"`
		}
		if err := json.Unmarshal(b, &s); err != nil {
			t.Fatalf("%s: %v", typ, err)
		}
		if s.Schema != "https://json-schema.org/draft/2020-12/schema" || s.Title != typ || s.Properties["type"]["const"] != typ {
			t.Errorf("%s: $schema %q, title %q, type %v", typ, s.Schema, s.Title, s.Properties["type"])
		}
		for name, d := range s.Defs {
			if prev, ok := defs[name]; ok && !reflect.DeepEqual(prev, d) {
				t.Errorf("$defs/%s differs between %s and %s", name, from[name], typ)
			}
			defs[name], from[name] = d, typ
		}
	}
}

const (
	evt = `"id":"evt_01kaaaaaaaaaaaaaaaaaaaaaaa","api_version":"2026-11-01","created_at":"2026-11-01T12:00:00Z","program_id":"prg_default"`
	com = `{"id":"com_01kaaaaaaaaaaaaaaaaaaaaaaa","program_id":"prg_default","conversion_id":"cnv_1","partner_id":"ptn_1",
		"status":"approved","rate_bps":1000,"currency":"USD","test":false,"terms":{"explanation":"default rate"},"net_minor":1000,
		"hold_until":"2026-12-01T12:00:00Z","created_at":"2026-11-01T12:00:00Z"}`
	cnv = `{"id":"cnv_01kaaaaaaaaaaaaaaaaaaaaaaa","program_id":"prg_default","source_id":"src_1","provider":"stripe",
		"keys":["cs_1"],"kind":"new","livemode":true,"customer":{},"base_minor":100,"gross_minor":120,"tax_minor":20,
		"currency":"USD","hints":{},"partner_id":"ptn_1","attribution_reason":"click","refunded_minor":0,
		"refunded_base_minor":0,"occurred_at":"2026-11-01T12:00:00Z","received_at":"2026-11-01T12:00:01Z"}`
)

func TestSchemasRejectWrongPayloads(t *testing.T) {
	sch := compile(t)
	cases := []struct {
		name, typ, body string
		valid           bool
	}{
		{"a commission", "commission.approved", `{` + evt + `,"type":"commission.approved","data":` + com + `}`, true},
		{"another type than the schema's", "commission.approved", `{` + evt + `,"type":"commission.created","data":` + com + `}`, false},
		{"an unknown envelope field", "commission.approved", `{` + evt + `,"type":"commission.approved","extra":1,"data":` + com + `}`, false},
		{"a paid commission without its payout", "commission.paid", `{` + evt + `,"type":"commission.paid","data":` + com + `}`, false},
		{"a paid commission", "commission.paid", `{` + evt + `,"type":"commission.paid","data":` +
			strings.Replace(com, `"status":"approved"`, `"status":"paid","payout_id":"pay_01kaaaaaaaaaaaaaaaaaaaaaaa"`, 1) + `}`, true},
		{"an unknown commission status", "commission.created", `{` + evt + `,"type":"commission.created","data":` +
			strings.Replace(com, `"approved"`, `"due"`, 1) + `}`, false},
		{"an attributed conversion", "conversion.created", `{` + evt + `,"type":"conversion.created","data":` + cnv + `}`, true},
		{"an attributed conversion without its reason", "conversion.created", `{` + evt + `,"type":"conversion.created","data":` +
			strings.Replace(cnv, `"attribution_reason":"click",`, ``, 1) + `}`, false},
		{"a lower-case currency", "conversion.created", `{` + evt + `,"type":"conversion.created","data":` +
			strings.Replace(cnv, `"USD"`, `"usd"`, 1) + `}`, false},
		{"a time that is not RFC 3339", "conversion.created", `{` + evt + `,"type":"conversion.created","data":` +
			strings.Replace(cnv, `"2026-11-01T12:00:01Z"`, `"yesterday"`, 1) + `}`, false},
		{"a reversal without its amount", "commission.reversed", `{` + evt + `,"type":"commission.reversed","data":{"commission":` + com + `,"conversion_id":"cnv_1"}}`, false},
		{"a ping", "ping", `{` + evt + `,"type":"ping","data":{}}`, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			v, err := jsonschema.UnmarshalJSON(strings.NewReader(c.body))
			if err != nil {
				t.Fatal(err)
			}
			err = sch[c.typ].Validate(v)
			if (err == nil) != c.valid {
				t.Errorf("valid = %v (%v), want %v", err == nil, err, c.valid)
			}
		})
	}
}

func TestServe(t *testing.T) {
	e := echo.New()
	e.HTTPErrorHandler = hub.ErrorHandler
	schemas.Mount(e.Group("/api/v1"))
	get := func(path string) *httptest.ResponseRecorder {
		rec := httptest.NewRecorder()
		e.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		return rec
	}
	rec := get("/api/v1/schemas/commission.paid")
	want, _ := schemas.Schema("commission.paid")
	if rec.Code != http.StatusOK || rec.Header().Get("Content-Type") != "application/schema+json" || !bytes.Equal(rec.Body.Bytes(), want) {
		t.Errorf("GET a schema: %d %s", rec.Code, rec.Header().Get("Content-Type"))
	}
	rec = get("/api/v1/schemas")
	var list struct{ Data []string }
	if err := json.Unmarshal(rec.Body.Bytes(), &list); err != nil || !reflect.DeepEqual(list.Data, catalog) {
		t.Errorf("GET the list: %d %s", rec.Code, rec.Body)
	}
	for _, path := range []string{"/api/v1/schemas/commission.unknown", "/api/v1/schemas/..%2Fschemas.go"} {
		if rec := get(path); rec.Code != http.StatusNotFound || rec.Header().Get("Content-Type") != "application/problem+json" {
			t.Errorf("GET %s: %d %s", path, rec.Code, rec.Header().Get("Content-Type"))
		}
	}
}
