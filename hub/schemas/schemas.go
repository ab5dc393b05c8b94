// Package schemas holds the JSON Schema (draft 2020-12) of every outbound
// event type, one file per type named <type>.json, describing the whole
// envelope and its data. They are embedded and served under the API, so
// partners can validate what they receive.
package schemas

import (
	"embed"
	"net/http"
	"slices"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/partnerhub/partnerhub/hub"
)

//go:embed *.json
var files embed.FS

// Types returns the event types that have a schema, sorted.
func Types() []string {
	ents, _ := files.ReadDir(".")
	out := make([]string, 0, len(ents))
	for _, e := range ents {
		out = append(out, strings.TrimSuffix(e.Name(), ".json"))
	}
	slices.Sort(out)
	return out
}

// Schema returns the schema of an event type.
func Schema(eventType string) ([]byte, bool) {
	if eventType == "" || strings.ContainsAny(eventType, "/\\") {
		return nil, false
	}
	b, err := files.ReadFile(eventType + ".json")
	return b, err == nil
}

// Mount adds the schema routes to g. They need no API key: receivers
// without one validate payloads with them.
//
//	GET /schemas          the event types that have a schema
//	GET /schemas/:type    the schema of one type (application/schema+json)
func Mount(g *echo.Group) {
	g.GET("/schemas", func(c echo.Context) error {
		return c.JSON(http.StatusOK, map[string][]string{"data": Types()})
	})
	g.GET("/schemas/:type", func(c echo.Context) error {
		b, ok := Schema(c.Param("type"))
		if !ok {
			return hub.Errorf(hub.ENOTFOUND, "no schema for event type %q", c.Param("type"))
		}
		c.Response().Header().Set("Cache-Control", "public, max-age=3600")
		return c.Blob(http.StatusOK, "application/schema+json", b)
	})
}
