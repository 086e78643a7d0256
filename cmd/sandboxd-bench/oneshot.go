package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/sandboxd/sandboxd/client"
)

// oneShotReport is what --oneshot measures: a one-shot run against the
// same code's execute in a context that exists, and runs back to back
// from several clients, each checking its own answer.
type oneShotReport struct {
	URL     string `json:"url"`
	Calls   int    `json:"calls"`
	Latency struct {
		ExecuteP50 *float64 `json:"execute_p50_ms"` // in a context that exists
		RAGFlowP50 *float64 `json:"ragflow_run_p50_ms"`
		DifyP50    *float64 `json:"dify_run_p50_ms"`
		ExecuteP90 *float64 `json:"execute_p90_ms"`
		RAGFlowP90 *float64 `json:"ragflow_run_p90_ms"`
		DifyP90    *float64 `json:"dify_run_p90_ms"`
		// Over execute, at the median.
		RAGFlowOverP50 *float64 `json:"ragflow_overhead_p50_ms"`
		DifyOverP50    *float64 `json:"dify_overhead_p50_ms"`
	} `json:"latency"`
	Sustained struct {
		Clients   int      `json:"clients"`
		Seconds   float64  `json:"seconds"`
		Runs      int64    `json:"runs"`
		PerSecond *float64 `json:"per_second"`
		Wrong     int64    `json:"wrong_answers"`
		Errors    int64    `json:"errors"`
		P50       *float64 `json:"p50_ms"`
		P99       *float64 `json:"p99_ms"`
		FirstErr  string   `json:"first_error,omitempty"`
	} `json:"sustained"`
}

// runOneShot takes the --oneshot measurements.
func (b *bench) runOneShot(ctx context.Context) (*oneShotReport, error) {
	rep := &oneShotReport{URL: b.cfg.URL, Calls: b.cfg.Calls}
	if err := b.api.Health(ctx); err != nil {
		return nil, fmt.Errorf("sandboxd at %s: %w", b.cfg.URL, err)
	}
	b.logf("one-shot latency…")
	c, _, err := b.create(ctx)
	if err != nil {
		return nil, err
	}
	var n atomic.Int64
	execute := func() error {
		want, code := answer(n.Add(1))
		resp, err := b.api.Execute(ctx, c.ID, client.ExecuteRequest{Code: code})
		if err == nil && resp.Output.Stdout != want {
			err = fmt.Errorf("execute printed %q, want %q", resp.Output.Stdout, want)
		}
		return err
	}
	ragflow := func() error { return b.ragflowRun(ctx, n.Add(1)) }
	dify := func() error { return b.difyRun(ctx, n.Add(1)) }
	// Interleaved, so that the load of the moment weighs on each alike.
	var execTimes, ragTimes, difyTimes []time.Duration
	for i := range warmup + b.cfg.Calls {
		for _, s := range []struct {
			call  func() error
			times *[]time.Duration
		}{{execute, &execTimes}, {ragflow, &ragTimes}, {dify, &difyTimes}} {
			start := time.Now()
			if err := s.call(); err != nil {
				return nil, err
			}
			if i >= warmup {
				*s.times = append(*s.times, time.Since(start))
			}
		}
	}
	l := &rep.Latency
	l.ExecuteP50, l.RAGFlowP50, l.DifyP50 = percentile(execTimes, 50), percentile(ragTimes, 50), percentile(difyTimes, 50)
	l.ExecuteP90, l.RAGFlowP90, l.DifyP90 = percentile(execTimes, 90), percentile(ragTimes, 90), percentile(difyTimes, 90)
	l.RAGFlowOverP50, l.DifyOverP50 = diff(l.RAGFlowP50, l.ExecuteP50), diff(l.DifyP50, l.ExecuteP50)
	if err := b.remove(ctx, c.ID); err != nil {
		return nil, err
	}

	s := &rep.Sustained
	s.Clients = b.cfg.OneShotClients
	b.logf("one-shot runs back to back from %d clients for %s…", s.Clients, b.cfg.OneShotDuration)
	var wrong, errs atomic.Int64
	var firstErr atomic.Value
	times := make([][]time.Duration, s.Clients)
	count, took, err := loop(ctx, s.Clients, b.cfg.OneShotDuration, func(i int) error {
		start := time.Now()
		err := b.difyRun(ctx, n.Add(1))
		times[i] = append(times[i], time.Since(start))
		switch {
		case err == nil:
		case isWrong(err):
			wrong.Add(1)
		default:
			errs.Add(1)
			firstErr.CompareAndSwap(nil, err.Error())
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	var all []time.Duration
	for _, t := range times {
		all = append(all, t...)
	}
	s.Seconds, s.Runs, s.Wrong, s.Errors = took.Seconds(), count-wrong.Load()-errs.Load(), wrong.Load(), errs.Load()
	s.PerSecond = rate(s.Runs, took)
	s.P50, s.P99 = percentile(all, 50), percentile(all, 99)
	if v := firstErr.Load(); v != nil {
		s.FirstErr = v.(string)
	}
	return rep, nil
}

// answer returns code whose output is unique to i, and that output.
func answer(i int64) (want, code string) {
	return strconv.FormatInt(i*7919, 10) + "\n", fmt.Sprintf("print(%d * 7919)", i)
}

type wrongAnswer struct{ msg string }

func (w wrongAnswer) Error() string { return w.msg }

func isWrong(err error) bool {
	_, ok := err.(wrongAnswer)
	return ok
}

// ragflowRun runs answer(i) through RAGFlow's route, as main's value.
func (b *bench) ragflowRun(ctx context.Context, i int64) error {
	want, _ := answer(i)
	code := fmt.Sprintf("def main(n):\n    return str(n * 7919)\n")
	var out struct {
		Status string
		Result *struct{ Value string }
	}
	if err := b.postJSON(ctx, "/run", nil, map[string]any{"code_b64": base64.StdEncoding.EncodeToString([]byte(code)), "language": "python", "arguments": map[string]any{"n": i}}, &out); err != nil {
		return err
	}
	if out.Status != "success" || out.Result == nil || out.Result.Value+"\n" != want {
		return wrongAnswer{fmt.Sprintf("ragflow run %d: status %s, result %+v", i, out.Status, out.Result)}
	}
	return nil
}

// difyRun runs answer(i) through Dify's route.
func (b *bench) difyRun(ctx context.Context, i int64) error {
	want, code := answer(i)
	var out struct {
		Code    int
		Message string
		Data    *struct{ Stdout, Error string }
	}
	if err := b.postJSON(ctx, "/v1/sandbox/run", map[string]string{"X-Api-Key": b.cfg.APIKey}, map[string]any{"language": "python3", "code": code, "preload": "", "enable_network": true}, &out); err != nil {
		return err
	}
	if out.Code != 0 || out.Data == nil {
		return fmt.Errorf("dify run: %d %s", out.Code, out.Message)
	}
	if out.Data.Stdout != want || out.Data.Error != "" {
		return wrongAnswer{fmt.Sprintf("dify run %d: stdout %q, error %q", i, out.Data.Stdout, out.Data.Error)}
	}
	return nil
}

func (b *bench) postJSON(ctx context.Context, path string, headers map[string]string, body, out any) error {
	data, err := json.Marshal(body)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, "POST", b.cfg.URL+path, bytes.NewReader(data))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := b.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	respBody, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("POST %s: %d %s", path, resp.StatusCode, respBody)
	}
	return json.Unmarshal(respBody, out)
}

func (r *oneShotReport) writeJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

func (r *oneShotReport) writeTable(w io.Writer) error {
	var buf bytes.Buffer
	tw := tabwriter.NewWriter(&buf, 0, 0, 2, ' ', 0)
	row := func(name, value, note string) { fmt.Fprintf(tw, "%s\t%s\t%s\n", name, value, note) }
	l, s := r.Latency, r.Sustained
	row("MEASURE", "VALUE", "NOTE")
	row("execute p50 / p90", pair(l.ExecuteP50, l.ExecuteP90), fmt.Sprintf("the same code in a context that exists; %d calls each, interleaved", r.Calls))
	row("RAGFlow /run p50 / p90", pair(l.RAGFlowP50, l.RAGFlowP90), "main(n) returns the answer; over execute at p50: "+msText(l.RAGFlowOverP50))
	row("Dify /v1/sandbox/run p50 / p90", pair(l.DifyP50, l.DifyP90), "over execute at p50: "+msText(l.DifyOverP50))
	row("sustained one-shot runs", rateText(s.PerSecond), fmt.Sprintf("%d right answers from %d clients in %.0f s; p50 / p99 %s", s.Runs, s.Clients, s.Seconds, pair(s.P50, s.P99)))
	note := "none"
	if s.FirstErr != "" {
		note = "first error: " + s.FirstErr
	}
	row("wrong answers / errors", fmt.Sprintf("%d / %d", s.Wrong, s.Errors), note)
	tw.Flush()
	_, err := w.Write(buf.Bytes())
	return err
}
