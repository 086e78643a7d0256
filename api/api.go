// Package api holds the OpenAPI 3.0.3 description of sandboxd's HTTP API.
//
// The document lives in openapi.yaml next to this file and is embedded in
// the binary as Spec, so tests (see internal/apitest) and tools can check
// the server against the same bytes that are published.
package api

import _ "embed"

// Spec is the raw YAML of api/openapi.yaml, the OpenAPI 3.0.3 document that
// describes every endpoint, request body, response and error code.
//
//go:embed openapi.yaml
var Spec []byte
