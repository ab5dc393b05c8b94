package openapi_test

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	"github.com/labstack/echo/v4"
	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/partnerhub/partnerhub/hub/openapi"
)

// TestOpenAPIDocumentValid validates the document against the OpenAPI 3.1
// schema published by the OpenAPI Initiative (testdata), and each of its
// component schemas against JSON Schema draft 2020-12, the dialect of
// OpenAPI 3.1.
func TestOpenAPIDocumentValid(t *testing.T) {
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(openapi.Document()))
	if err != nil {
		t.Fatalf("the document is not JSON: %v", err)
	}
	meta, err := os.ReadFile("testdata/oas-3.1-schema.json")
	if err != nil {
		t.Fatal(err)
	}
	metaDoc, err := jsonschema.UnmarshalJSON(bytes.NewReader(meta))
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	if err := c.AddResource("https://spec.openapis.org/oas/3.1/schema/2022-10-07", metaDoc); err != nil {
		t.Fatal(err)
	}
	oas, err := c.Compile("https://spec.openapis.org/oas/3.1/schema/2022-10-07")
	if err != nil {
		t.Fatalf("compiling the OpenAPI schema: %v", err)
	}
	if err := oas.Validate(doc); err != nil {
		t.Errorf("the document is not valid OpenAPI 3.1:\n%v", err)
	}

	// Component schemas refer to each other with #/components/schemas/…,
	// so they are compiled inside the document.
	const base = "https://partnerhub.invalid/openapi.json"
	sc := jsonschema.NewCompiler()
	sc.DefaultDraft(jsonschema.Draft2020)
	if err := sc.AddResource(base, doc); err != nil {
		t.Fatal(err)
	}
	comps, _ := doc.(map[string]any)["components"].(map[string]any)
	schemas, _ := comps["schemas"].(map[string]any)
	if len(schemas) == 0 {
		t.Fatal("the document has no component schemas")
	}
	for name := range schemas {
		if _, err := sc.Compile(base + "#/components/schemas/" + name); err != nil {
			t.Errorf("component schema %s: %v", name, err)
		}
	}
}

func TestOpenAPIServed(t *testing.T) {
	e := echo.New()
	openapi.Mount(e.Group("/api/v1"))
	get := func(header ...string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(http.MethodGet, "/api/v1/openapi.json", nil)
		for i := 0; i+1 < len(header); i += 2 {
			req.Header.Set(header[i], header[i+1])
		}
		rec := httptest.NewRecorder()
		e.ServeHTTP(rec, req)
		return rec
	}
	rec := get()
	if rec.Code != http.StatusOK || !bytes.Equal(rec.Body.Bytes(), openapi.Document()) {
		t.Fatalf("GET /api/v1/openapi.json: %d with %d bytes, want 200 with the document", rec.Code, rec.Body.Len())
	}
	if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("Content-Type = %q, want application/json", ct)
	}
	etag := rec.Header().Get("ETag")
	if etag == "" || !strings.Contains(rec.Header().Get("Cache-Control"), "public") {
		t.Errorf("ETag %q, Cache-Control %q: want a cacheable answer", etag, rec.Header().Get("Cache-Control"))
	}
	if rec := get("If-None-Match", etag); rec.Code != http.StatusNotModified || rec.Body.Len() != 0 {
		t.Errorf("GET with If-None-Match: %d with %d bytes, want 304 without a body", rec.Code, rec.Body.Len())
	}
	if rec := get("If-None-Match", `"stale"`); rec.Code != http.StatusOK {
		t.Errorf("GET with a stale If-None-Match: %d, want 200", rec.Code)
	}
}
