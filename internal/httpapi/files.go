package httpapi

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/url"
	"path"
	"regexp"
	"strconv"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/sandboxd/sandboxd/internal/contexts"
)

// fileService lists the methods the file and command handlers call.
type fileService interface {
	WriteFile(ctx context.Context, id, path string, body io.Reader) (contexts.FileInfo, error)
	OpenFile(ctx context.Context, id, path string) (contexts.FileInfo, io.ReadCloser, error)
	ListFiles(ctx context.Context, id, dir string) ([]contexts.FileInfo, error)
	DeleteFile(ctx context.Context, id, path string) error
	RunCommand(ctx context.Context, id string, req contexts.CommandRequest) (contexts.CommandResult, error)
}

// DefaultMaxUpload caps file uploads when Config.MaxUploadBytes is 0.
// Uploads are exempt from MaxBodyBytes, which is sized for JSON.
const DefaultMaxUpload = 1 << 30

// uploadReadTimeout replaces the server's read timeout, sized for JSON
// bodies, while an upload arrives.
const uploadReadTimeout = time.Hour

// addFileRoutes adds the routes of files and commands below a context.
func addFileRoutes(r chi.Router, log *slog.Logger, svc contextService, cfg Config) {
	maxUpload := uploadLimit(cfg)
	r.Get("/files", handleListFiles(log, svc))
	r.Get("/files/*", handleGetFile(log, svc))
	r.Put("/files/*", handlePutFile(log, svc, maxUpload))
	r.Delete("/files/*", handleDeleteFile(log, svc))
	r.Post("/commands", handleCommand(log, svc))
}

// uploadLimit is the cap on uploads cfg sets.
func uploadLimit(cfg Config) int64 {
	if cfg.MaxUploadBytes <= 0 {
		return DefaultMaxUpload
	}
	return cfg.MaxUploadBytes
}

// uploadPath matches the requests handlePutFile serves, which limitBody
// leaves to it: it runs before routing.
var uploadPath = regexp.MustCompile(`^/api/v1/contexts/[^/]+/files/`)

// isUpload reports whether r uploads a file.
func isUpload(r *http.Request) bool {
	return r.Method == http.MethodPut && uploadPath.MatchString(r.URL.Path) ||
		r.Method == http.MethodPost && agentRunUploadPath.MatchString(r.URL.Path)
}

type fileJSON struct {
	Name  string `json:"name"`
	Path  string `json:"path"`
	Size  int64  `json:"size"`
	Mode  string `json:"mode"`
	Mtime string `json:"mtime"`
	IsDir bool   `json:"is_dir"`
}

func newFileJSON(f contexts.FileInfo) fileJSON {
	return fileJSON{
		Name:  f.Name,
		Path:  f.Path,
		Size:  f.Size,
		Mode:  fmt.Sprintf("%04o", f.Mode),
		Mtime: f.ModTime.UTC().Format(time.RFC3339),
		IsDir: f.IsDir,
	}
}

type listFilesResponse struct {
	Files []fileJSON `json:"files"`
}

// filePath is the file path of a request to /files/*, decoded: chi gives
// the raw path when the client escaped a character it need not have.
func filePath(r *http.Request) (string, error) {
	p := chi.URLParam(r, "*")
	if r.URL.RawPath == "" {
		return p, nil
	}
	p, err := url.PathUnescape(p)
	if err != nil {
		return "", contexts.Errorf(contexts.CodeInvalidPath, "path is not properly escaped: %v", err)
	}
	return p, nil
}

func handleListFiles(log *slog.Logger, svc contextService) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		files, err := svc.ListFiles(r.Context(), chi.URLParam(r, "id"), r.URL.Query().Get("path"))
		if err != nil {
			writeError(w, r, log, err)
			return
		}
		resp := listFilesResponse{Files: make([]fileJSON, len(files))}
		for i, f := range files {
			resp.Files[i] = newFileJSON(f)
		}
		encode(w, http.StatusOK, resp)
	}
}

func handleGetFile(log *slog.Logger, svc contextService) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		p, err := filePath(r)
		if err != nil {
			writeError(w, r, log, err)
			return
		}
		serveFile(w, r, log, svc, chi.URLParam(r, "id"), p)
	}
}

// serveFile answers with the raw bytes of the file at p in the context or
// sandbox id.
func serveFile(w http.ResponseWriter, r *http.Request, log *slog.Logger, svc contextService, id, p string) {
	f, body, err := svc.OpenFile(r.Context(), id, p)
	if err != nil {
		writeError(w, r, log, err)
		return
	}
	defer body.Close()
	setDownloadHeaders(w.Header(), f.Name)
	w.Header().Set("Content-Length", strconv.FormatInt(f.Size, 10))
	w.WriteHeader(http.StatusOK)
	if _, err := io.Copy(w, body); err != nil && r.Context().Err() == nil {
		// Too late for an error body: the short response tells the
		// client, as its Content-Length is not reached.
		log.Warn("file download broke off", "path", r.URL.Path, "error", err)
	}
}

// inlineTypes are the types a browser may show in place: it runs nothing
// of theirs. Anything else a context wrote (HTML, SVG, PDF, scripts) is
// handed over as an attachment, so that opening a download never makes a
// page on the API's origin, whose script could drive every context.
var inlineTypes = map[string]bool{
	"text/plain": true, "text/csv": true, "application/json": true,
	"image/png": true, "image/jpeg": true, "image/gif": true, "image/webp": true,
}

// downloadCSP applies even where a browser renders a file after all: no
// script runs, and the document gets an origin of its own.
const downloadCSP = "default-src 'none'; style-src 'unsafe-inline'; sandbox"

// setDownloadHeaders sets the type of a file named name, and how a browser
// is to treat it.
func setDownloadHeaders(h http.Header, name string) {
	ct := mime.TypeByExtension(path.Ext(name))
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		ct, mt = "application/octet-stream", "application/octet-stream"
	}
	h.Set("Content-Type", ct)
	h.Set("Content-Security-Policy", downloadCSP)
	if !inlineTypes[mt] {
		d := mime.FormatMediaType("attachment", map[string]string{"filename": name})
		if d == "" { // a name it cannot encode
			d = "attachment"
		}
		h.Set("Content-Disposition", d)
	}
}

func handlePutFile(log *slog.Logger, svc contextService, maxUpload int64) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		p, err := filePath(r)
		if err != nil {
			writeError(w, r, log, err)
			return
		}
		if r.ContentLength > maxUpload {
			writeError(w, r, log, contexts.Errorf(codeTooLarge, "upload is larger than %d bytes", maxUpload))
			return
		}
		// An error here means a writer that cannot (httptest's); the
		// server's read timeout then stays.
		http.NewResponseController(w).SetReadDeadline(time.Now().Add(uploadReadTimeout))
		f, err := svc.WriteFile(r.Context(), chi.URLParam(r, "id"), p, http.MaxBytesReader(w, r.Body, maxUpload))
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			err = contexts.Errorf(codeTooLarge, "upload is larger than %d bytes", tooLarge.Limit)
		}
		if err != nil {
			writeError(w, r, log, err)
			return
		}
		encode(w, http.StatusCreated, newFileJSON(f))
	}
}

func handleDeleteFile(log *slog.Logger, svc contextService) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		p, err := filePath(r)
		if err != nil {
			writeError(w, r, log, err)
			return
		}
		if err := svc.DeleteFile(r.Context(), chi.URLParam(r, "id"), p); err != nil {
			writeError(w, r, log, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}
}
