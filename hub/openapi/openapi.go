// Package openapi holds the OpenAPI 3.1 description of the REST API under
// /api/v1 and serves it, without an API key, at GET /api/v1/openapi.json.
// An end-to-end test of cmd/partnerhub keeps it in step with the routes the
// server mounts.
package openapi

import (
	"bytes"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"
)

//go:embed openapi.json
var document []byte

// etag names the document's version, so caches revalidate it cheaply.
var etag = func() string {
	sum := sha256.Sum256(document)
	return `"` + hex.EncodeToString(sum[:12]) + `"`
}()

// Document returns a copy of the OpenAPI document (JSON).
func Document() []byte { return bytes.Clone(document) }

// Mount adds GET /openapi.json to g, a group that needs no API key. The
// answer is cacheable: it carries an ETag and answers If-None-Match with
// 304 Not Modified.
func Mount(g *echo.Group) {
	g.GET("/openapi.json", serve)
}

func serve(c echo.Context) error {
	h := c.Response().Header()
	h.Set(echo.HeaderContentType, echo.MIMEApplicationJSON)
	h.Set("Cache-Control", "public, max-age=300")
	h.Set("ETag", etag)
	http.ServeContent(c.Response(), c.Request(), "openapi.json", time.Time{}, bytes.NewReader(document))
	return nil
}
