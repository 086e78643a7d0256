package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// report is every number of a run. Times are milliseconds, sizes bytes; a
// null is a number that could not be measured.
type report struct {
	URL         string      `json:"url"`
	WarmCreate  warmCreate  `json:"warm_create"`
	Burst       burst       `json:"create_burst"`
	Execute     execute     `json:"execute"`
	LargeOutput largeOutput `json:"large_output"`
	Throughput  throughput  `json:"throughput"`
	Memory      memory      `json:"memory"`
}

type warmCreate struct {
	Rounds       int      `json:"rounds"`
	Hits         int      `json:"hits"`
	PoolEndpoint bool     `json:"pool_endpoint"` // whether the server has GET /api/v1/pool
	P50          *float64 `json:"p50_ms"`        // over hits
	P99          *float64 `json:"p99_ms"`
}

type burst struct {
	Creates int      `json:"creates"`
	Limited bool     `json:"limited"` // the server refused more contexts (TOO_MANY_CONTEXTS)
	Hits    int      `json:"hits"`
	Misses  int      `json:"misses"`
	P50     *float64 `json:"p50_ms"`
	P99     *float64 `json:"p99_ms"`
	ColdP50 *float64 `json:"cold_p50_ms"` // over misses
}

type execute struct {
	Calls       int      `json:"calls"`
	P50         *float64 `json:"p50_ms"`
	P90         *float64 `json:"p90_ms"`
	P99         *float64 `json:"p99_ms"`
	FloorP50    *float64 `json:"floor_p50_ms"`
	FloorP90    *float64 `json:"floor_p90_ms"`
	FloorP99    *float64 `json:"floor_p99_ms"`
	OverheadP50 *float64 `json:"overhead_p50_ms"`
	OverheadP90 *float64 `json:"overhead_p90_ms"`
	FloorError  string   `json:"floor_error,omitempty"`
}

type largeOutput struct {
	Median        *float64 `json:"median_ms"`
	ResponseBytes int64    `json:"response_bytes"`
	StdoutBytes   int      `json:"stdout_bytes"`
	Truncated     bool     `json:"truncated"`
}

type throughput struct {
	Contexts   int      `json:"contexts"`
	Seconds    float64  `json:"seconds"`
	Executions int64    `json:"executions"`
	PerSecond  *float64 `json:"per_second"`
	FloorExecs int64    `json:"floor_executions"`
	FloorPerS  *float64 `json:"floor_per_second"`
	Percent    *float64 `json:"percent_of_floor"`
	FloorError string   `json:"floor_error,omitempty"`
}

type memory struct {
	RSSIdle       *int64 `json:"daemon_rss_idle_bytes"`
	RSSBeforeLoad *int64 `json:"daemon_rss_before_load_bytes"`
	RSSAfterLoad  *int64 `json:"daemon_rss_after_load_bytes"`
	ContextMean   *int64 `json:"context_mean_bytes"` // idle contexts after the throughput run
	ContextError  string `json:"context_error,omitempty"`
}

// percentile returns the nearest-rank p-th percentile of samples, or nil
// when there are none.
func percentile(samples []time.Duration, p float64) *float64 {
	if len(samples) == 0 {
		return nil
	}
	sorted := slices.Sorted(slices.Values(samples))
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	return ms(sorted[min(max(rank, 1), len(sorted))-1])
}

// ms returns d in milliseconds, to the microsecond.
func ms(d time.Duration) *float64 {
	return round(float64(d.Microseconds())/1000, 3)
}

func diff(a, b *float64) *float64 {
	if a == nil || b == nil {
		return nil
	}
	return round(*a-*b, 3)
}

// round rounds v to the given decimals, so that JSON shows no float noise.
func round(v float64, decimals int) *float64 {
	p := math.Pow10(decimals)
	v = math.Round(v*p) / p
	return &v
}

func (r *report) writeJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

func (r *report) writeTable(w io.Writer) error {
	var buf bytes.Buffer
	tw := tabwriter.NewWriter(&buf, 0, 0, 2, ' ', 0)
	row := func(name, value, note string) { fmt.Fprintf(tw, "%s\t%s\t%s\n", name, value, note) }

	row("MEASURE", "VALUE", "NOTE")
	wc := r.WarmCreate
	note := fmt.Sprintf("%d of %d from the pool", wc.Hits, wc.Rounds)
	if !wc.PoolEndpoint {
		note += "; no pool endpoint"
	}
	row("warm create p50 / p99", pair(wc.P50, wc.P99), note)

	b := r.Burst
	note = fmt.Sprintf("%d creates: %d hits, %d misses", b.Creates, b.Hits, b.Misses)
	if b.Limited {
		note += "; stopped by TOO_MANY_CONTEXTS"
	}
	row("create burst p50 / p99", pair(b.P50, b.P99), note)
	row("cold create p50", msText(b.ColdP50), fmt.Sprintf("over %d misses", b.Misses))

	e := r.Execute
	row("execute p50 / p90 / p99", triple(e.P50, e.P90, e.P99), fmt.Sprintf("print(1), %d sequential calls", e.Calls))
	row("floor p50 / p90 / p99", triple(e.FloorP50, e.FloorP90, e.FloorP99), floorNote("raw websocket to a kernel in the same container", e.FloorError))
	row("overhead p50 / p90", pair(e.OverheadP50, e.OverheadP90), "execute − floor")

	lo := r.LargeOutput
	note = fmt.Sprintf("median of 3; response %s, stdout %s", sizeText(lo.ResponseBytes), sizeText(int64(lo.StdoutBytes)))
	if lo.Truncated {
		note += ", truncated"
	}
	row("10 MiB stdout", msText(lo.Median), note)

	t := r.Throughput
	row("throughput", rateText(t.PerSecond), fmt.Sprintf("%d contexts, %.1f s, %d executions", t.Contexts, t.Seconds, t.Executions))
	row("floor throughput", rateText(t.FloorPerS), floorNote(fmt.Sprintf("%d raw kernels, %d executions", t.Contexts, t.FloorExecs), t.FloorError))
	row("throughput / floor", percentText(t.Percent), "")

	m := r.Memory
	row("daemon RSS idle / before / after load", strings.Join([]string{bytesText(m.RSSIdle), bytesText(m.RSSBeforeLoad), bytesText(m.RSSAfterLoad)}, " / "), "process_resident_memory_bytes")
	row("context memory", bytesText(m.ContextMean), floorNote("mean of idle contexts, as docker stats counts it", m.ContextError))
	if err := tw.Flush(); err != nil {
		return err
	}
	// tabwriter pads the cell before an empty note.
	for line := range strings.Lines(buf.String()) {
		if _, err := io.WriteString(w, strings.TrimRight(line, " \n")+"\n"); err != nil {
			return err
		}
	}
	return nil
}

func floorNote(note, err string) string {
	if err != "" {
		return "unavailable: " + err
	}
	return note
}

func msText(v *float64) string {
	switch {
	case v == nil:
		return "n/a"
	case *v >= 1000:
		return fmt.Sprintf("%.2f s", *v/1000)
	case *v >= 10:
		return fmt.Sprintf("%.1f ms", *v)
	}
	return fmt.Sprintf("%.2f ms", *v)
}

func pair(a, b *float64) string { return msText(a) + " / " + msText(b) }

func triple(a, b, c *float64) string { return msText(a) + " / " + msText(b) + " / " + msText(c) }

func rateText(v *float64) string {
	if v == nil {
		return "n/a"
	}
	return fmt.Sprintf("%.1f exec/s", *v)
}

func percentText(v *float64) string {
	if v == nil {
		return "n/a"
	}
	return fmt.Sprintf("%.1f%%", *v)
}

func bytesText(v *int64) string {
	if v == nil {
		return "n/a"
	}
	return sizeText(*v)
}

func sizeText(n int64) string {
	return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
}
