package httpapi

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httputil"
	"net/url"
	"sort"
	"sync"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/sandboxd/sandboxd/internal/contexts"
)

// Placement says which replica of the daemon drives a context, where
// several serve the same contexts. Each context is driven by one replica
// only, so that its executions keep their order wherever they arrive:
// the others pass its requests on to that one.
type Placement interface {
	// Locate returns the URL of the replica that drives id, a context or
	// sandbox this replica does not hold; nil when it is served here: it
	// is this replica's, there is none, or this replica has just taken it
	// over from a dead one.
	Locate(ctx context.Context, id string) (*url.URL, error)
	// Peers returns the URLs of the other live replicas.
	Peers(ctx context.Context) ([]*url.URL, error)
}

// headerForwarded marks a request one replica passed on to another, so
// that it is never passed on again.
const headerForwarded = "X-Sandboxd-Forwarded"

// forwarded reports whether another replica passed r on.
func forwarded(r *http.Request) bool { return r.Header.Get(headerForwarded) != "" }

// forwardUnheld passes requests for a context or sandbox this replica
// does not hold (held says which it holds; param names the route's id) on
// to the replica that drives it.
func forwardUnheld(log *slog.Logger, place Placement, param string, held func(id string) bool) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		if place == nil {
			return next
		}
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			id := chi.URLParam(r, param)
			if id == "" || held(id) || forwarded(r) {
				next.ServeHTTP(w, r)
				return
			}
			remote, err := place.Locate(r.Context(), id)
			if err != nil {
				writeError(w, r, log, err)
				return
			}
			if remote == nil {
				next.ServeHTTP(w, r)
				return
			}
			// The replica that serves it bounds the request as it does its
			// own: ReadTimeout here would cut a websocket it relays.
			http.NewResponseController(w).SetReadDeadline(time.Time{})
			forwardTo(log, remote).ServeHTTP(w, r)
		})
	}
}

// forwardTo passes a request on to the replica at remote, streams and
// websockets included.
func forwardTo(log *slog.Logger, remote *url.URL) http.Handler {
	return &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(remote)
			pr.Out.Host = pr.In.Host // the replica checks the Host the client sent
			pr.Out.Header.Set(headerForwarded, "1")
		},
		FlushInterval: -1,
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			log.Warn("could not pass a request on to the replica that drives its context", "replica", remote.String(), "path", r.URL.Path, "error", err)
			writeError(w, r, log, contexts.Errorf(contexts.CodeRuntimeUnavailable, "the replica that drives this context does not answer"))
		},
	}
}

// peerListTimeout bounds asking one replica for its list.
const peerListTimeout = 5 * time.Second

// peerLists asks every other live replica for what r asks of this one,
// and returns the bodies of their answers. A replica that does not answer
// is left out.
func peerLists(log *slog.Logger, place Placement, r *http.Request) [][]byte {
	if place == nil || forwarded(r) {
		return nil
	}
	peers, err := place.Peers(r.Context())
	if err != nil {
		log.Warn("cannot list the other replicas", "error", err)
		return nil
	}
	bodies := make([][]byte, len(peers))
	var wg sync.WaitGroup
	for i, peer := range peers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(r.Context(), peerListTimeout)
			defer cancel()
			u := *peer
			u.Path, u.RawQuery = r.URL.Path, r.URL.RawQuery
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
			if err != nil {
				return
			}
			req.Header = r.Header.Clone()
			req.Host = r.Host
			req.Header.Set(headerForwarded, "1")
			resp, err := http.DefaultClient.Do(req)
			if err == nil {
				defer resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					err = &url.Error{Op: "GET", URL: u.String(), Err: io.ErrUnexpectedEOF}
				}
			}
			if err == nil {
				bodies[i], err = io.ReadAll(resp.Body)
			}
			if err != nil {
				log.Warn("a replica did not give its list", "replica", peer.String(), "error", err)
			}
		}()
	}
	wg.Wait()
	return bodies
}

// mergeContexts adds the contexts the other replicas listed to mine,
// each once, oldest first.
func mergeContexts(mine []contextResponse, bodies [][]byte) []contextResponse {
	seen := map[string]bool{}
	for _, c := range mine {
		seen[c.ContextID] = true
	}
	for _, b := range bodies {
		var theirs listContextsResponse
		if json.Unmarshal(b, &theirs) != nil {
			continue
		}
		for _, c := range theirs.Contexts {
			if !seen[c.ContextID] {
				seen[c.ContextID] = true
				mine = append(mine, c)
			}
		}
	}
	sort.SliceStable(mine, func(i, j int) bool { return mine[i].CreatedAt < mine[j].CreatedAt })
	return mine
}

// mergeSandboxes adds the sandboxes the other replicas listed to mine,
// each once, oldest first.
func mergeSandboxes(mine []agentRunSandbox, bodies [][]byte) []agentRunSandbox {
	seen := map[string]bool{}
	for _, s := range mine {
		seen[s.SandboxID] = true
	}
	for _, b := range bodies {
		var theirs struct {
			Data struct {
				Items []agentRunSandbox `json:"items"`
			} `json:"data"`
		}
		if json.Unmarshal(b, &theirs) != nil {
			continue
		}
		for _, s := range theirs.Data.Items {
			if !seen[s.SandboxID] {
				seen[s.SandboxID] = true
				mine = append(mine, s)
			}
		}
	}
	sort.SliceStable(mine, func(i, j int) bool { return mine[i].CreatedAt < mine[j].CreatedAt })
	return mine
}
