package httpapi

import (
	"math"
	"net/http"
	"strings"
	"time"

	"github.com/sandboxd/sandboxd/internal/contexts"
)

// bounds is what requests are checked against that only the service
// knows: the timeouts it allows.
type bounds interface {
	// Timeout returns the timeout a run asking for d gets. Errors:
	// CodeInvalid, for one out of bounds.
	Timeout(d time.Duration) (time.Duration, error)
}

// validatable is a decoded request that checks itself. Every handler
// checks its whole request this way, once, before any call that creates or
// runs anything: a request refused leaves nothing behind, and the domain
// takes requests as they come. What depends on the domain's state (a
// context's working dir and language) or configuration (languages, egress)
// is left to the domain, which checks it before it does anything.
type validatable interface {
	validate(b bounds) error
}

// decodeValid reads r's body into req and checks it.
func decodeValid(r *http.Request, req validatable, b bounds) error {
	if err := decode(r, req); err != nil {
		return err
	}
	return req.validate(b)
}

// required refuses a request without field.
func required(field string) error {
	return contexts.Errorf(contexts.CodeInvalid, "field %q is required", field)
}

// checkCommand checks a request's command: there, and not blank.
func checkCommand(command *string) error {
	if command == nil {
		return required("command")
	}
	if strings.TrimSpace(*command) == "" {
		return contexts.Errorf(contexts.CodeInvalid, "field \"command\" must not be empty")
	}
	return nil
}

// checkTimeout checks a request's "timeout" in seconds: absent, for the
// default, or more than 0 and within the service's bounds.
func checkTimeout(seconds *float64, b bounds) error {
	if seconds == nil {
		return nil
	}
	if *seconds <= 0 {
		return contexts.Errorf(contexts.CodeInvalid, "field \"timeout\" must be more than 0 seconds")
	}
	_, err := b.Timeout(duration(seconds))
	return err
}

// duration is a request's "timeout" in seconds as a duration; 0, for the
// default, when it is absent. One past what a Duration holds (292 years)
// is the longest there is: converted as it is, it would wrap to a negative
// one, refused, where the caller caps it.
func duration(seconds *float64) time.Duration {
	if seconds == nil {
		return 0
	}
	if *seconds >= float64(math.MaxInt64)/float64(time.Second) {
		return math.MaxInt64
	}
	return time.Duration(*seconds * float64(time.Second))
}
