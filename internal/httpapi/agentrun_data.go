package httpapi

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"path"
	"regexp"
	"strconv"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/sandboxd/sandboxd/internal/contexts"
)

// The file system and process routes of AgentRun's sandbox data API, as
// its SDKs call them. Paths are as for /files: in the working dir, or in
// /home/user, which stands for it. AgentRun publishes no shapes for their
// answers; these are sandboxd's own, in AgentRun's camelCase.

// agentRunService lists the methods these routes call besides those of
// fileService.
type agentRunService interface {
	WriteFileMode(ctx context.Context, id, path string, body io.Reader, mode uint32) (contexts.FileInfo, error)
	ListTree(ctx context.Context, id, dir string, depth int) ([]contexts.FileInfo, error)
	StatFile(ctx context.Context, id, path string) (contexts.FileInfo, error)
	MakeDir(ctx context.Context, id, path string, mode uint32, parents bool) (contexts.FileInfo, error)
	MoveFile(ctx context.Context, id, src, dst string) (contexts.FileInfo, error)
	ListProcesses(ctx context.Context, id string) ([]contexts.Process, error)
	GetProcess(ctx context.Context, id string, pid int) (contexts.Process, error)
	KillProcess(ctx context.Context, id string, pid int) error
}

// addAgentRunDataRoutes adds the routes below /sandboxes/{sandbox_id}.
func addAgentRunDataRoutes(r chi.Router, log *slog.Logger, svc contextService, cfg Config) {
	r.Get("/sandboxes/{sandbox_id}/filesystem", handleAgentRunListDir(log, svc))
	r.Get("/sandboxes/{sandbox_id}/filesystem/stat", handleAgentRunStat(log, svc))
	r.Post("/sandboxes/{sandbox_id}/filesystem/mkdir", handleAgentRunMkdir(log, svc))
	r.Post("/sandboxes/{sandbox_id}/filesystem/move", handleAgentRunMove(log, svc))
	r.Post("/sandboxes/{sandbox_id}/filesystem/remove", handleAgentRunRemove(log, svc))
	r.Post("/sandboxes/{sandbox_id}/filesystem/upload", handleAgentRunUpload(log, svc, uploadLimit(cfg)))
	r.Get("/sandboxes/{sandbox_id}/filesystem/download", handleAgentRunDownload(log, svc))
	r.Get("/sandboxes/{sandbox_id}/processes", handleAgentRunProcesses(log, svc))
	r.Get("/sandboxes/{sandbox_id}/processes/{pid}", handleAgentRunProcess(log, svc))
	r.Delete("/sandboxes/{sandbox_id}/processes/{pid}", handleAgentRunKill(log, svc))
}

// agentRunUploadPath matches the uploads that limitBody leaves to
// handleAgentRunUpload.
var agentRunUploadPath = regexp.MustCompile(`^/sandboxes/[^/]+/filesystem/upload$`)

type agentRunFile struct {
	Name string `json:"name"`
	// Path is absolute: in the working dir.
	Path  string `json:"path"`
	Type  string `json:"type"` // file, directory or other (a FIFO, socket, device or dangling link)
	Size  int64  `json:"size"`
	Mode  string `json:"mode"`  // octal: 0644
	Mtime string `json:"mtime"` // RFC 3339
}

func newAgentRunFile(f contexts.FileInfo, workDir string) agentRunFile {
	kind := "other"
	switch {
	case f.IsDir:
		kind = "directory"
	case f.Regular:
		kind = "file"
	}
	return agentRunFile{
		Name:  f.Name,
		Path:  path.Join(workDir, f.Path),
		Type:  kind,
		Size:  f.Size,
		Mode:  fmt.Sprintf("%04o", f.Mode),
		Mtime: f.ModTime.UTC().Format(time.RFC3339),
	}
}

// agentRunData runs serve with where the sandbox id's files and processes
// are (agentRunContextOf), and answers with what it returns, or its error.
func agentRunData(log *slog.Logger, svc contextService, serve func(r *http.Request, c contexts.Info) (any, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		c, err := agentRunContextOf(r, svc)
		if err != nil {
			writeError(w, r, log, err)
			return
		}
		v, err := serve(r, c)
		if err != nil {
			writeError(w, r, log, err)
			return
		}
		encode(w, http.StatusOK, v)
	}
}

// queryPath is the path a query parameter names, relative to the working
// dir; def stands in when it is missing.
func queryPath(r *http.Request, c contexts.Info, def string) (string, error) {
	q := r.URL.Query()
	if !q.Has("path") {
		if def == "" {
			return "", required("path")
		}
		return agentRunPath(def, c.WorkingDir), nil
	}
	return agentRunPath(q.Get("path"), c.WorkingDir), nil
}

func handleAgentRunListDir(log *slog.Logger, svc contextService) http.HandlerFunc {
	return agentRunData(log, svc, func(r *http.Request, c contexts.Info) (any, error) {
		p, _ := queryPath(r, c, agentRunHome)
		depth := 1
		if d := r.URL.Query().Get("depth"); d != "" {
			var err error
			if depth, err = strconv.Atoi(d); err != nil {
				return nil, contexts.Errorf(contexts.CodeInvalid, "depth %q is not a number", d)
			}
		}
		files, err := svc.ListTree(r.Context(), c.ID, p, depth)
		if err != nil {
			return nil, err
		}
		list := make([]agentRunFile, len(files))
		for i, f := range files {
			list[i] = newAgentRunFile(f, c.WorkingDir)
		}
		return list, nil
	})
}

func handleAgentRunStat(log *slog.Logger, svc contextService) http.HandlerFunc {
	return agentRunData(log, svc, func(r *http.Request, c contexts.Info) (any, error) {
		p, err := queryPath(r, c, "")
		if err != nil {
			return nil, err
		}
		f, err := svc.StatFile(r.Context(), c.ID, p)
		if err != nil {
			return nil, err
		}
		return newAgentRunFile(f, c.WorkingDir), nil
	})
}

// modePattern is an octal permission mode: 755, 0755, 1777.
var modePattern = regexp.MustCompile(`^[0-7]{3,4}$`)

// agentRunWrite writes body to the file p of context c, with mode, one
// modePattern matches, or with the mode of the file it replaces where mode
// is "". Without createDir, p's parent must be a directory already.
func agentRunWrite(ctx context.Context, svc contextService, c contexts.Info, p string, body io.Reader, mode string, createDir bool) (contexts.FileInfo, error) {
	rel := agentRunPath(p, c.WorkingDir)
	if !createDir {
		parent, err := svc.StatFile(ctx, c.ID, path.Dir(rel))
		if err != nil {
			return contexts.FileInfo{}, err
		}
		if !parent.IsDir {
			return contexts.FileInfo{}, contexts.Errorf(contexts.CodeInvalidPath, "the parent of %s is not a directory", p)
		}
	}
	if mode == "" {
		return svc.WriteFile(ctx, c.ID, rel, body)
	}
	m, _ := strconv.ParseUint(mode, 8, 32)
	return svc.WriteFileMode(ctx, c.ID, rel, body, uint32(m))
}

func handleAgentRunMkdir(log *slog.Logger, svc contextService) http.HandlerFunc {
	return agentRunData(log, svc, func(r *http.Request, c contexts.Info) (any, error) {
		var req struct {
			Path    *string `json:"path"`
			Parents *bool   `json:"parents"`
			Mode    string  `json:"mode"`
		}
		if err := decode(r, &req); err != nil {
			return nil, err
		}
		if req.Path == nil {
			return nil, required("path")
		}
		mode := uint64(0o755)
		if req.Mode != "" {
			if !modePattern.MatchString(req.Mode) {
				return nil, contexts.Errorf(contexts.CodeInvalid, "mode %q is not an octal permission mode such as 0755", req.Mode)
			}
			mode, _ = strconv.ParseUint(req.Mode, 8, 32)
		}
		parents := req.Parents == nil || *req.Parents
		f, err := svc.MakeDir(r.Context(), c.ID, agentRunPath(*req.Path, c.WorkingDir), uint32(mode), parents)
		if err != nil {
			return nil, err
		}
		return newAgentRunFile(f, c.WorkingDir), nil
	})
}

func handleAgentRunMove(log *slog.Logger, svc contextService) http.HandlerFunc {
	return agentRunData(log, svc, func(r *http.Request, c contexts.Info) (any, error) {
		var req struct {
			Source      *string `json:"source"`
			Destination *string `json:"destination"`
		}
		if err := decode(r, &req); err != nil {
			return nil, err
		}
		switch {
		case req.Source == nil:
			return nil, required("source")
		case req.Destination == nil:
			return nil, required("destination")
		}
		f, err := svc.MoveFile(r.Context(), c.ID, agentRunPath(*req.Source, c.WorkingDir), agentRunPath(*req.Destination, c.WorkingDir))
		if err != nil {
			return nil, err
		}
		return newAgentRunFile(f, c.WorkingDir), nil
	})
}

func handleAgentRunRemove(log *slog.Logger, svc contextService) http.HandlerFunc {
	return agentRunData(log, svc, func(r *http.Request, c contexts.Info) (any, error) {
		var req struct {
			Path *string `json:"path"`
		}
		if err := decode(r, &req); err != nil {
			return nil, err
		}
		if req.Path == nil {
			return nil, required("path")
		}
		if err := svc.DeleteFile(r.Context(), c.ID, agentRunPath(*req.Path, c.WorkingDir)); err != nil {
			return nil, err
		}
		return map[string]string{"path": *req.Path, "status": "ok"}, nil
	})
}

// handleAgentRunUpload writes the multipart form's "file" to its "path".
// With the path first, as the Python SDK sends it, the file streams to the
// container; a file that comes first, as the Node.js SDK sends it, is held
// until the path comes, so it may be 10 MiB at most.
func handleAgentRunUpload(log *slog.Logger, svc contextService, maxUpload int64) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		c, err := agentRunContextOf(r, svc)
		if err != nil {
			writeError(w, r, log, err)
			return
		}
		if r.ContentLength > maxUpload {
			writeError(w, r, log, contexts.Errorf(codeTooLarge, "upload is larger than %d bytes", maxUpload))
			return
		}
		http.NewResponseController(w).SetReadDeadline(time.Now().Add(uploadReadTimeout))
		r.Body = http.MaxBytesReader(w, r.Body, maxUpload)
		f, err := uploadForm(r, func(target string, body io.Reader) (contexts.FileInfo, error) {
			return svc.WriteFile(r.Context(), c.ID, agentRunPath(target, c.WorkingDir), body)
		})
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			err = contexts.Errorf(codeTooLarge, "upload is larger than %d bytes", tooLarge.Limit)
		}
		if err != nil {
			writeError(w, r, log, err)
			return
		}
		encode(w, http.StatusOK, newAgentRunFile(f, c.WorkingDir))
	}
}

// maxFormPath bounds the path field of an upload: Linux's PATH_MAX.
const maxFormPath = 4096

// uploadForm reads r's multipart form and calls write with its "path" and
// "file" once it has both.
func uploadForm(r *http.Request, write func(target string, body io.Reader) (contexts.FileInfo, error)) (contexts.FileInfo, error) {
	mr, err := r.MultipartReader()
	if err != nil {
		return contexts.FileInfo{}, contexts.Errorf(contexts.CodeInvalid, "the upload must be multipart/form-data with the fields path and file: %v", err)
	}
	var target string
	var held []byte // the file, when it came before the path
	for {
		part, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			return contexts.FileInfo{}, badForm(err)
		}
		switch part.FormName() {
		case "path":
			b, err := io.ReadAll(io.LimitReader(part, maxFormPath+1))
			switch {
			case err != nil:
				return contexts.FileInfo{}, badForm(err)
			case len(b) > maxFormPath:
				return contexts.FileInfo{}, contexts.Errorf(contexts.CodeInvalidPath, "path must be at most %d bytes", maxFormPath)
			}
			target = string(b)
		case "file":
			if target != "" {
				return write(target, part)
			}
			if held, err = io.ReadAll(io.LimitReader(part, agentRunFileLimit+1)); err != nil {
				return contexts.FileInfo{}, badForm(err)
			}
			if len(held) > agentRunFileLimit {
				return contexts.FileInfo{}, contexts.Errorf(codeTooLarge, "a file before its path may be %d bytes at most; send the path field first", agentRunFileLimit)
			}
		}
	}
	switch {
	case held == nil:
		return contexts.FileInfo{}, required("file")
	case target == "":
		return contexts.FileInfo{}, required("path")
	}
	return write(target, bytes.NewReader(held))
}

// badForm is the error of a multipart form that cannot be read: its body
// was over the limit, or is not a form.
func badForm(err error) error {
	if errors.As(err, new(*http.MaxBytesError)) {
		return err
	}
	return contexts.Errorf(contexts.CodeInvalid, "the upload is not a well-formed multipart form: %v", err)
}

func handleAgentRunDownload(log *slog.Logger, svc contextService) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		c, err := agentRunContextOf(r, svc)
		if err != nil {
			writeError(w, r, log, err)
			return
		}
		p, err := queryPath(r, c, "")
		if err != nil {
			writeError(w, r, log, err)
			return
		}
		serveFile(w, r, log, svc, c.ID, p)
	}
}

type agentRunProcess struct {
	PID     int    `json:"pid"`
	PPID    int    `json:"ppid"`
	Name    string `json:"name"`
	Cmdline string `json:"cmdline"`
	User    string `json:"user"`
	// Status is running, sleeping, disk-sleep, zombie, stopped,
	// tracing-stop, idle or dead.
	Status    string  `json:"status"`
	StartTime string  `json:"startTime"` // RFC 3339
	CPUTime   float64 `json:"cpuTime"`   // seconds
	Memory    int64   `json:"memory"`    // resident, in bytes
	// Role is init, jupyter-server, kernel or sandboxd for the processes
	// that cannot be killed; absent for the others.
	Role      string `json:"role,omitempty"`
	Protected bool   `json:"protected"`
}

func newAgentRunProcess(p contexts.Process) agentRunProcess {
	return agentRunProcess{
		PID: p.PID, PPID: p.PPID, Name: p.Name, Cmdline: p.Cmdline, User: p.User, Status: p.State,
		StartTime: p.Started.Format(time.RFC3339), CPUTime: p.CPU.Seconds(), Memory: p.RSS,
		Role: string(p.Role), Protected: p.Role != "",
	}
}

// pidParam is the route's pid.
func pidParam(r *http.Request) (int, error) {
	pid, err := strconv.Atoi(chi.URLParam(r, "pid"))
	if err != nil || pid <= 0 {
		return 0, contexts.Errorf(contexts.CodeInvalid, "pid %q is not a process id", chi.URLParam(r, "pid"))
	}
	return pid, nil
}

func handleAgentRunProcesses(log *slog.Logger, svc contextService) http.HandlerFunc {
	return agentRunData(log, svc, func(r *http.Request, c contexts.Info) (any, error) {
		ps, err := svc.ListProcesses(r.Context(), c.ID)
		if err != nil {
			return nil, err
		}
		list := make([]agentRunProcess, len(ps))
		for i, p := range ps {
			list[i] = newAgentRunProcess(p)
		}
		return list, nil
	})
}

func handleAgentRunProcess(log *slog.Logger, svc contextService) http.HandlerFunc {
	return agentRunData(log, svc, func(r *http.Request, c contexts.Info) (any, error) {
		pid, err := pidParam(r)
		if err != nil {
			return nil, err
		}
		p, err := svc.GetProcess(r.Context(), c.ID, pid)
		if err != nil {
			return nil, err
		}
		return newAgentRunProcess(p), nil
	})
}

func handleAgentRunKill(log *slog.Logger, svc contextService) http.HandlerFunc {
	return agentRunData(log, svc, func(r *http.Request, c contexts.Info) (any, error) {
		pid, err := pidParam(r)
		if err != nil {
			return nil, err
		}
		if err := svc.KillProcess(r.Context(), c.ID, pid); err != nil {
			return nil, err
		}
		return map[string]any{"pid": pid, "status": "ok"}, nil
	})
}
