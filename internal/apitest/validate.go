// Package apitest checks real HTTP traffic against api/openapi.yaml. It is
// meant to be used from tests only.
//
// A typical use in an end-to-end test:
//
//	v := apitest.New(t)
//	resp, err := http.DefaultClient.Do(req) // req built with body reqBody
//	...
//	respBody, _ := io.ReadAll(resp.Body)
//	v.Check(t, req, reqBody, resp, respBody)
package apitest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"

	"github.com/sandboxd/sandboxd/api"
)

// Validator checks real requests and responses against api/openapi.yaml.
type Validator struct {
	doc    *openapi3.T
	router routers.Router
	// errorSchema is components.schemas.Error, used for responses to
	// requests that match no operation (404 NOT_FOUND, 405 METHOD_NOT_ALLOWED).
	errorSchema *openapi3.Schema
}

// New loads api.Spec, validates the document itself and returns a Validator.
// It calls tb.Fatal when the document is not a valid OpenAPI document.
func New(tb testing.TB) *Validator {
	tb.Helper()
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(api.Spec)
	if err != nil {
		tb.Fatalf("apitest: loading api/openapi.yaml: %v", err)
		return nil
	}
	// Validate also checks every example in the document against its schema.
	if err := doc.Validate(context.Background(), openapi3.EnableSchemaFormatValidation()); err != nil {
		tb.Fatalf("apitest: api/openapi.yaml is not a valid OpenAPI document: %v", err)
		return nil
	}
	errRef := doc.Components.Schemas["Error"]
	if errRef == nil || errRef.Value == nil {
		tb.Fatalf("apitest: api/openapi.yaml has no components.schemas.Error")
		return nil
	}
	// Match routes by path only: tests run the server on a random port, so
	// the document's server URL (http://127.0.0.1:8080) would never match.
	// With no servers, the router accepts any scheme and host.
	doc.Servers = nil
	router, err := gorillamux.NewRouter(doc)
	if err != nil {
		tb.Fatalf("apitest: building router from api/openapi.yaml: %v", err)
		return nil
	}
	return &Validator{doc: doc, router: router, errorSchema: errRef.Value}
}

func options() *openapi3filter.Options {
	return &openapi3filter.Options{
		// A status the document does not list for the operation is a failure.
		IncludeResponseStatus: true,
		// Validate a copy; never rewrite the body with defaults.
		SkipSettingDefaults: true,
		MultiError:          true,
		// Auth is optional (the document allows none); the daemon's own tests
		// check it.
		AuthenticationFunc: openapi3filter.NoopAuthenticationFunc,
		// Say where and why, without dumping the whole schema.
		SchemaValidationOptions: []openapi3.SchemaValidationOption{openapi3.DisableSchemaErrorDetails()},
	}
}

// Check validates the response (status, content type, body schema) for the
// request; reqBody and respBody are the raw bytes already read from them.
//
// The request body, when present, is validated too, but only when the server
// accepted the request (status below 400): a request the document calls
// invalid must not succeed, while tests are free to send bad requests to
// exercise 4xx answers. A JSON request body without a Content-Type header is
// taken as application/json.
//
// A request that matches no operation in the document must get a 404
// NOT_FOUND (unknown path) or 405 METHOD_NOT_ALLOWED (known path, other
// method) Error body.
//
// Failures are reported with tb.Errorf, naming the method and path.
func (v *Validator) Check(tb testing.TB, req *http.Request, reqBody []byte, resp *http.Response, respBody []byte) {
	tb.Helper()
	if req == nil || resp == nil {
		tb.Errorf("apitest: Check called with a nil request or response")
		return
	}
	where := req.Method + " " + req.URL.Path
	ctx := context.Background()

	r := req.Clone(ctx)
	r.Body = http.NoBody
	r.GetBody = nil
	r.ContentLength = 0
	if len(reqBody) > 0 {
		r.Body = io.NopCloser(bytes.NewReader(reqBody))
		r.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(reqBody)), nil }
		r.ContentLength = int64(len(reqBody))
		if r.Header.Get("Content-Type") == "" {
			r.Header.Set("Content-Type", "application/json")
		}
	}

	route, pathParams, err := v.router.FindRoute(r)
	if err != nil {
		v.checkUnrouted(tb, where, err, resp, respBody)
		return
	}

	reqIn := &openapi3filter.RequestValidationInput{
		Request:    r,
		PathParams: pathParams,
		Route:      route,
		Options:    options(),
	}
	if resp.StatusCode < 400 {
		if err := openapi3filter.ValidateRequest(ctx, reqIn); err != nil {
			tb.Errorf("apitest: %s (%s): the server answered %d to a request that does not match api/openapi.yaml: %v",
				where, route.Operation.OperationID, resp.StatusCode, err)
		}
	}

	respIn := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: reqIn,
		Status:                 resp.StatusCode,
		Header:                 resp.Header,
		Options:                options(),
	}
	respIn.SetBodyBytes(respBody)
	if err := openapi3filter.ValidateResponse(ctx, respIn); err != nil {
		tb.Errorf("apitest: %s (%s): response %d does not match api/openapi.yaml: %v\nbody: %s",
			where, route.Operation.OperationID, resp.StatusCode, err, clip(respBody))
		return
	}

	// kin-openapi skips responses the document gives no content; such a
	// response (e.g. 204) must really have no body.
	if ref := route.Operation.Responses.Status(resp.StatusCode); ref != nil && ref.Value != nil &&
		len(ref.Value.Content) == 0 && len(respBody) > 0 {
		tb.Errorf("apitest: %s (%s): response %d must have no body, got %d bytes: %s",
			where, route.Operation.OperationID, resp.StatusCode, len(respBody), clip(respBody))
	}
}

// checkUnrouted validates the answer to a request that matches no operation.
func (v *Validator) checkUnrouted(tb testing.TB, where string, routeErr error, resp *http.Response, respBody []byte) {
	tb.Helper()
	var wantStatus int
	var wantCode string
	switch {
	case errors.Is(routeErr, routers.ErrMethodNotAllowed):
		wantStatus, wantCode = http.StatusMethodNotAllowed, "METHOD_NOT_ALLOWED"
	case errors.Is(routeErr, routers.ErrPathNotFound):
		wantStatus, wantCode = http.StatusNotFound, "NOT_FOUND"
	default:
		tb.Errorf("apitest: %s: finding the operation in api/openapi.yaml: %v", where, routeErr)
		return
	}
	if resp.StatusCode != wantStatus {
		tb.Errorf("apitest: %s: no such operation in api/openapi.yaml (%v), so want status %d, got %d\nbody: %s",
			where, routeErr, wantStatus, resp.StatusCode, clip(respBody))
		return
	}
	if err := v.checkErrorBody(resp, respBody, wantCode); err != nil {
		tb.Errorf("apitest: %s: response %d: %v\nbody: %s", where, resp.StatusCode, err, clip(respBody))
	}
}

// checkErrorBody checks that an answer is a JSON Error body with code want.
func (v *Validator) checkErrorBody(resp *http.Response, body []byte, want string) error {
	ct := resp.Header.Get("Content-Type")
	if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != "application/json" {
		return fmt.Errorf("content type %q, want application/json", ct)
	}
	var value any
	if err := json.Unmarshal(body, &value); err != nil {
		return fmt.Errorf("body is not JSON: %v", err)
	}
	if err := v.errorSchema.VisitJSON(value, openapi3.MultiErrors(), openapi3.VisitAsResponse(), openapi3.DisableSchemaErrorDetails()); err != nil {
		return fmt.Errorf("body doesn't match schema Error: %v", err)
	}
	if code := value.(map[string]any)["code"]; code != want {
		return fmt.Errorf("code %v, want %s", code, want)
	}
	return nil
}

// clip shortens a body for an error message.
func clip(b []byte) string {
	const limit = 2000
	if len(b) > limit {
		return string(b[:limit]) + "…"
	}
	return string(b)
}
