package main

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/sandboxd/sandboxd/internal/testenv"
)

// What the console test runs through the API before it opens the page:
// output, an error, a plot, and two outputs that would run script in a
// page that inserted them as markup.
const (
	consolePrint = `print("hello from the kernel")`
	consoleRaise = `1/0`
	// Under the Agg backend plt.show() displays nothing; inline sends a PNG.
	consolePlot = "%matplotlib inline\nimport matplotlib.pyplot as plt\nplt.plot([1, 2, 3]); plt.show()"
	// A script that ran on the console's origin would create a context,
	// retitle the page and leave a marker on its window.
	consoleHostileHTML  = `from IPython.display import display, HTML; display(HTML('<b>bold html</b><img src=x onerror="fetch(\'/api/v1/contexts\',{method:\'POST\',body:JSON.stringify({language:\'python\'})}); parent.pwned = 1; parent.document.title = \'pwned\'">'))`
	consoleHostilePrint = `print('<script>document.title="pwned"; window.pwned = 1</script>')`
)

// The console shows a context's history as a person would read it, runs
// what is typed in its cell, and runs nothing that code printed or
// displayed.
func TestConsole(t *testing.T) {
	d := startDaemon(t, "--pool", "python=0")
	id := d.create(t)
	if status, body := d.putFile(t, id, "data/results.csv", strings.NewReader("x,y\n1,2\n")); status != http.StatusCreated {
		t.Fatalf("upload: %d %s", status, body)
	}
	for _, code := range []string{consolePrint, consoleRaise, consolePlot, consoleHostileHTML, consoleHostilePrint} {
		d.execute(t, id, code, 60)
	}

	resp, err := http.Get(d.url + "/ui/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") || !strings.Contains(csp, "frame-ancestors 'none'") {
		t.Errorf("/ui/ Content-Security-Policy %q", csp)
	}
	if got := resp.Header.Get("X-Frame-Options"); got != "DENY" {
		t.Errorf("/ui/ X-Frame-Options %q", got)
	}

	tab := testenv.Browser(t)
	do(t, tab, time.Minute, chromedp.EmulateViewport(1280, 900), chromedp.Navigate(d.url+"/"), chromedp.WaitVisible(`#contexts li[data-id="`+id+`"]`))
	if err := chromedp.Do(timeout(t, tab, time.Minute), chromedp.Click(`#contexts li[data-id="`+id+`"]`), chromedp.WaitReady(`#notebook .entry:nth-child(5)`)); err != nil {
		t.Fatalf("the history is not shown: %v\n%s", err, eval[string](t, tab, `document.body.innerText`))
	}

	notebook := eval[string](t, tab, `document.querySelector("#notebook").innerText`)
	for _, want := range []string{`print("hello from the kernel")`, "hello from the kernel", "ZeroDivisionError", "division by zero", "plt.plot([1, 2, 3])",
		`<script>document.title="pwned"; window.pwned = 1</script>`} {
		if !strings.Contains(notebook, want) {
			t.Errorf("the notebook does not show %q:\n%s", want, notebook)
		}
	}
	if n := eval[int](t, tab, `document.querySelectorAll("#notebook pre.traceback").length`); n != 1 {
		t.Errorf("%d tracebacks shown, want 1", n)
	}

	// The plot is an image with real pixels: drawn on a canvas, some of
	// them are neither white nor transparent.
	painted := evalAsync[bool](t, tab, `(async () => {
		const img = document.querySelector('#notebook .result[data-mime="image/png"] img');
		if (!img) return false;
		await img.decode();
		if (img.naturalWidth === 0) return false;
		const c = document.createElement("canvas");
		c.width = img.naturalWidth; c.height = img.naturalHeight;
		const g = c.getContext("2d");
		g.drawImage(img, 0, 0);
		const px = g.getImageData(0, 0, c.width, c.height).data;
		for (let i = 0; i < px.length; i += 4) {
			if (px[i + 3] > 0 && (px[i] < 200 || px[i + 1] < 200 || px[i + 2] < 200)) return true;
		}
		return false;
	})()`)
	if !painted {
		t.Errorf("the plot is not shown as an image with pixels; outputs shown: %q", eval[[]string](t, tab, `Array.from(document.querySelectorAll("#notebook .result"), r => r.dataset.mime + " " + r.innerHTML.slice(0, 80))`))
	}

	// The files panel lists the working directory, and a directory's files.
	do(t, tab, time.Minute, chromedp.Click(`#file-list a`), chromedp.Poll[chromedp.Void](`document.querySelector("#file-list").innerText.includes("results.csv")`))

	// The HTML output is shown in a frame that may run no script.
	sandbox := eval[[]string](t, tab, `Array.from(document.querySelectorAll("#notebook iframe"), f => f.hasAttribute("sandbox") ? f.getAttribute("sandbox") : "none")`)
	if len(sandbox) != 1 || sandbox[0] != "" {
		t.Errorf("HTML output frames' sandbox attributes: %q, want one empty", sandbox)
	}

	// Type code in the cell and run it: it reaches the kernel through the
	// API, and its output comes back into the notebook.
	do(t, tab, time.Minute,
		chromedp.SendKeys(`#code`, "print(6 * 7)"),
		chromedp.Click(`#run`),
		chromedp.Poll[chromedp.Void](`document.querySelector("#notebook").innerText.includes("42\n")`, chromedp.WithPollingTimeout(time.Minute)))
	var c struct {
		ExecutionCount int `json:"execution_count"`
	}
	if d.call(t, "GET", "/api/v1/contexts/"+id, nil, &c); c.ExecutionCount != 6 {
		t.Errorf("execution_count %d after the cell ran, want 6", c.ExecutionCount)
	}
	var h struct {
		Entries []struct {
			Code   string `json:"code"`
			Output struct {
				Stdout string `json:"stdout"`
			} `json:"output"`
		} `json:"entries"`
	}
	if d.call(t, "GET", "/api/v1/contexts/"+id+"/history", nil, &h); len(h.Entries) != 6 || h.Entries[5].Code != "print(6 * 7)" || h.Entries[5].Output.Stdout != "42\n" {
		t.Errorf("history after the cell ran: %+v", h.Entries)
	}

	// What runs elsewhere shows up while the page is open.
	d.execute(t, id, `print("from another client")`, 60)
	do(t, tab, time.Minute, chromedp.Poll[chromedp.Void](`document.querySelector("#notebook").innerText.includes("from another client\n")`))

	// Nothing the outputs held ran: no context was made, the title and
	// the window are the console's own.
	if title := eval[string](t, tab, `document.title`); title != "sandboxd" {
		t.Errorf("document.title %q", title)
	}
	if pwned := eval[bool](t, tab, `"pwned" in window`); pwned {
		t.Error("an output set a marker on the console's window")
	}
	if list := d.list(t); len(list) != 1 {
		t.Errorf("contexts after the console showed the outputs: %+v", list)
	}

	shot, err := chromedp.Run(timeout(t, tab, time.Minute), chromedp.FullScreenshot(100)) // 100: a PNG
	if err != nil {
		t.Fatal(err)
	}
	if dir := os.Getenv("SANDBOXD_CONSOLE_SHOT"); dir != "" {
		if err := os.WriteFile(filepath.Join(dir, "console.png"), shot, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// When the events stream cannot be read, the console polls the history
// instead, and still shows what runs.
func TestConsolePollsWithoutEvents(t *testing.T) {
	d := startDaemon(t, "--pool", "python=0")
	id := d.create(t)
	tab := testenv.Browser(t)
	block := network.SetBlockedURLsParams{URLPatterns: []*network.BlockPattern{{URLPattern: d.url + "/api/v1/events", Block: true}}}
	if _, err := chromedp.Call(timeout(t, tab, time.Minute), network.SetBlockedURLs, block); err != nil {
		t.Fatal(err)
	}
	do(t, tab, time.Minute, chromedp.Navigate(d.url+"/ui/#"+id), chromedp.WaitVisible(`#context`),
		chromedp.Poll[chromedp.Void](`document.querySelector("#live").textContent === "polling"`))
	d.execute(t, id, `print("seen by polling")`, 60)
	do(t, tab, time.Minute, chromedp.Poll[chromedp.Void](`document.querySelector("#notebook").innerText.includes("seen by polling\n")`))
}

// With auth on, the console asks for the key, and with it shows the
// contexts.
func TestConsoleAsksForKey(t *testing.T) {
	d := startDaemon(t, "--api-key", "k", "--pool", "python=0")
	req, _ := http.NewRequest("POST", d.url+"/api/v1/contexts", strings.NewReader(`{"language":"python"}`))
	req.Header.Set("Authorization", "Bearer k")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("create: %d", resp.StatusCode)
	}

	tab := testenv.Browser(t)
	do(t, tab, time.Minute, chromedp.EmulateViewport(1280, 900), chromedp.Navigate(d.url+"/"), chromedp.WaitVisible(`#login #key`))
	if n := eval[int](t, tab, `document.querySelectorAll("#contexts li").length`); n != 0 {
		t.Errorf("%d contexts shown before the key was given", n)
	}
	do(t, tab, time.Minute, chromedp.SendKeys(`#key`, "wrong"), chromedp.Click(`#login button`),
		chromedp.Poll[chromedp.Void](`document.querySelector("#login-error").textContent.includes("refused")`))
	do(t, tab, time.Minute, chromedp.SendKeys(`#key`, "k"), chromedp.Click(`#login button`), chromedp.WaitVisible(`#contexts li`))
	if n := eval[int](t, tab, `document.querySelectorAll("#contexts li").length`); n != 1 {
		t.Errorf("%d contexts shown, want 1", n)
	}
}

// timeout bounds one action on the tab; the tab itself lives on.
func timeout(t *testing.T, tab context.Context, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(tab, d)
	t.Cleanup(cancel)
	return ctx
}

func do(t *testing.T, tab context.Context, d time.Duration, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	if err := chromedp.Do(timeout(t, tab, d), steps...); err != nil {
		t.Fatal(err)
	}
}

func eval[T any](t *testing.T, tab context.Context, js string) T {
	t.Helper()
	v, err := chromedp.Run(timeout(t, tab, 30*time.Second), chromedp.Evaluate[T](js))
	if err != nil {
		t.Fatalf("%s: %v", js, err)
	}
	return v
}

func evalAsync[T any](t *testing.T, tab context.Context, js string) T {
	t.Helper()
	v, err := chromedp.Run(timeout(t, tab, 30*time.Second), chromedp.Evaluate[T](js, chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatalf("%s: %v", js, err)
	}
	return v
}
