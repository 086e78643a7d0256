package httpapi

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/sandboxd/sandboxd/internal/contexts"
)

func encode(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	// Code and tracebacks are full of < and >: keep them readable.
	enc.SetEscapeHTML(false)
	enc.Encode(v)
}

// decode reads a JSON body into v. Unknown fields are ignored, so clients
// written for other services can send extra fields. An empty body is an
// empty object.
func decode(r *http.Request, v any) error {
	err := json.NewDecoder(r.Body).Decode(v)
	var tooLarge *http.MaxBytesError
	var typeErr *json.UnmarshalTypeError
	var syntaxErr *json.SyntaxError
	switch {
	case err == nil, errors.Is(err, io.EOF):
		return nil
	case errors.As(err, &tooLarge):
		return contexts.Errorf(codeTooLarge, "request body is larger than %d bytes", tooLarge.Limit)
	case errors.As(err, &typeErr):
		return contexts.Errorf(contexts.CodeInvalid, "field %q must be %s, not %s", typeErr.Field, jsonType(typeErr.Type.Kind().String()), typeErr.Value)
	case errors.As(err, &syntaxErr), errors.Is(err, io.ErrUnexpectedEOF):
		return contexts.Errorf(contexts.CodeInvalid, "request body is not valid JSON: %v", err)
	default:
		return contexts.Errorf(contexts.CodeInvalid, "cannot read request body: %v", err)
	}
}

// jsonType names a Go kind as JSON calls it.
func jsonType(kind string) string {
	switch {
	case kind == "string":
		return "a string"
	case strings.HasPrefix(kind, "int"), strings.HasPrefix(kind, "uint"), strings.HasPrefix(kind, "float"):
		return "a number"
	case kind == "bool":
		return "a boolean"
	case kind == "map", kind == "struct":
		return "an object"
	case kind == "slice":
		return "an array"
	}
	return fmt.Sprintf("of type %s", kind)
}
