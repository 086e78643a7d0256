package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/sandboxd/sandboxd/internal/testenv"
)

// attackPage is a page of another origin that tries, from the browser of a
// user who runs sandboxd without auth, every route that changes anything:
// fetches in no-cors and cors mode, a websocket, and form posts whose
// text/plain body is JSON. Each attempt would leave a trace: a context, a
// file named pwned-*, an execution, a restart, a missing keep.txt.
const attackPage = `<!doctype html>
<html><body>
<div id="log"></div>
<iframe name="f1"></iframe><iframe name="f2"></iframe><iframe name="f3"></iframe>
<form method="POST" enctype="text/plain" target="f1" action="{{TARGET}}/api/v1/contexts"><input name='{"language":"python","x":"' value='"}'></form>
<form method="POST" enctype="text/plain" target="f2" action="{{TARGET}}/api/v1/contexts/{{ID}}/execute"><input name='{"code":"open(\"pwned-form\",\"w\").write(\"1\")#' value='"}'></form>
<form method="POST" enctype="text/plain" target="f3" action="{{TARGET}}/sandboxes/x/contexts/execute"><input name='{"language":"python","code":"open(\"pwned-form2\",\"w\").write(\"1\")#' value='"}'></form>
<script>
const T = "{{TARGET}}", ID = "{{ID}}";
const log = s => { const d = document.createElement("div"); d.textContent = s; document.getElementById("log").appendChild(d); };
const pwn = name => "open('" + name + "', 'w').write('1')";
const attempts = [
  ["POST", "/api/v1/contexts", {language: "python"}],
  ["POST", "/api/v1/contexts/" + ID + "/execute", {code: pwn("pwned-fetch")}],
  ["POST", "/api/v1/contexts/" + ID + "/interrupt", null],
  ["POST", "/api/v1/contexts/" + ID + "/restart", null],
  ["POST", "/api/v1/contexts/" + ID + "/commands", {command: "touch pwned-command"}],
  ["PUT", "/api/v1/contexts/" + ID + "/files/pwned-upload", "x"],
  ["DELETE", "/api/v1/contexts/" + ID + "/files/keep.txt", null],
  ["DELETE", "/api/v1/contexts/" + ID, null],
  ["POST", "/sandboxes/x/contexts", {language: "python"}],
  ["POST", "/sandboxes/x/contexts/execute", {code: pwn("pwned-agentrun"), language: "python"}],
  ["POST", "/sandboxes/" + ID + "/contexts/execute", {code: pwn("pwned-agentrun2")}],
  ["POST", "/sandboxes/" + ID + "/files", {path: "pwned-agentrun-file", content: "x"}],
  ["POST", "/sandboxes/" + ID + "/processes/cmd", {command: "touch pwned-agentrun-cmd"}],
  ["POST", "/mcp", {jsonrpc: "2.0", id: 1, method: "initialize", params: {protocolVersion: "2025-06-18", capabilities: {}, clientInfo: {name: "x", version: "1"}}}],
];
async function tryFetch([method, path, body], mode) {
  const init = {method, mode, credentials: "include", signal: AbortSignal.timeout(20000)};
  if (body !== null) {
    init.body = typeof body === "string" ? body : JSON.stringify(body);
    init.headers = {"Content-Type": "text/plain"};
  }
  try {
    const r = await fetch(T + path, init);
    log(mode + " " + method + " " + path + ": " + r.type + " " + r.status);
  } catch (e) {
    log(mode + " " + method + " " + path + ": " + e);
  }
}
function tryWebSocket() {
  return new Promise(resolve => {
    const ws = new WebSocket(T.replace("http", "ws") + "/api/v1/contexts/" + ID + "/ws");
    ws.onopen = () => {
      log("websocket: open");
      ws.send(JSON.stringify({header: {msg_id: "1", msg_type: "execute_request", session: "s", username: "", version: "5.3", date: ""},
        parent_header: {}, metadata: {}, content: {code: pwn("pwned-ws")}, channel: "shell"}));
    };
    ws.onmessage = e => { log("websocket: " + e.data.slice(0, 60)); if (e.data.includes("execute_reply")) ws.close(); };
    ws.onerror = () => log("websocket: error");
    ws.onclose = () => resolve();
    setTimeout(() => { log("websocket: still open"); ws.close(); resolve(); }, 20000);
  });
}
(async () => {
  for (const a of attempts) await tryFetch(a, "no-cors");
  for (const a of attempts) await tryFetch(a, "cors");
  await tryWebSocket();
  for (const f of document.forms) f.submit();
  await new Promise(r => setTimeout(r, 5000));
  document.body.dataset.state = "finished";
})();
</script>
</body></html>`

// A page of another origin cannot drive the daemon through the browser of
// a user who runs it without auth, whichever way it sends its requests.
func TestBrowserCannotDriveDaemon(t *testing.T) {
	d := startDaemon(t)
	id := d.create(t)
	if status, body := d.putFile(t, id, "keep.txt", strings.NewReader("keep")); status != http.StatusCreated {
		t.Fatalf("upload keep.txt: %d %s", status, body)
	}
	refusedBefore := d.refused(t)

	page := strings.NewReplacer("{{TARGET}}", d.url, "{{ID}}", id).Replace(attackPage)
	site := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		fmt.Fprint(w, page)
	}))
	defer site.Close()
	b := testenv.Browser(t)
	ctx, cancel := context.WithTimeout(b, 2*time.Minute)
	defer cancel()
	finished := chromedp.Do(ctx, chromedp.Navigate(site.URL), chromedp.WaitReady(`body[data-state="finished"]`))
	ctx, cancel = context.WithTimeout(b, 10*time.Second)
	defer cancel()
	seen, err := chromedp.Run(ctx, chromedp.Evaluate[string](`Array.from(document.querySelectorAll("#log div"), d => d.textContent).join("\n")`))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("what the page saw:\n%s", seen)

	if finished != nil {
		t.Fatalf("the attack page did not finish: %v", finished)
	}

	if list := d.list(t); len(list) != 1 || list[0].ContextID != id {
		t.Errorf("contexts after the attack: %+v, want only %s", list, id)
	}
	var c struct {
		ExecutionCount int `json:"execution_count"`
		Restarts       int
	}
	if d.call(t, "GET", "/api/v1/contexts/"+id, nil, &c); c.ExecutionCount != 0 || c.Restarts != 0 {
		t.Errorf("the context ran code from the page: %+v", c)
	}
	files := d.command(t, id, map[string]any{"command": "ls -A"}).Stdout
	if strings.Contains(files, "pwned") || !strings.Contains(files, "keep.txt") {
		t.Errorf("files after the attack:\n%s", files)
	}
	// The requests did reach the daemon and were refused there, rather
	// than being stopped by the browser alone.
	if n, sent := d.refused(t)-refusedBefore, strings.Count(seen, "no-cors POST"); sent < 10 || n < sent {
		t.Errorf("the daemon refused %d requests; the page sent %d no-cors POSTs", n, sent)
	}
}

// Opening a file that code wrote, in a browser, shows no page on the API's
// origin: a script in it would drive every context, websocket included.
func TestBrowserDownloadsRunNoScript(t *testing.T) {
	d := startDaemon(t)
	id := d.create(t)
	// What the script shows is not in its source: text shown as text
	// does not look as if it ran.
	const script = `<script>fetch("/api/v1/contexts", {method: "POST", body: "{}"}).then(r => document.documentElement.append("scr" + "ipt ran: " + r.status))</script>`
	files := map[string]string{
		"page.html":  `<html><body><p>rendered</p>` + script + `</body></html>`,
		"image.svg":  `<svg xmlns="http://www.w3.org/2000/svg"><text y="20">rendered</text>` + strings.ReplaceAll(script, "<script>", `<script type="text/javascript">`) + `</svg>`,
		"notes.txt":  `plain notes ` + script,
		"page.xhtml": `<html xmlns="http://www.w3.org/1999/xhtml"><body><p>rendered</p>` + script + `</body></html>`,
	}
	for name, content := range files {
		if status, body := d.putFile(t, id, name, strings.NewReader(content)); status != http.StatusCreated {
			t.Fatalf("upload %s: %d %s", name, status, body)
		}
	}
	b := testenv.Browser(t)
	for name := range files {
		// A tab of its own for each file: one handed over as an attachment
		// is no page, and leaves its tab where it was.
		tab, closeTab := testenv.NewTab(t, b)
		ctx, cancel := context.WithTimeout(tab, 15*time.Second)
		navErr := chromedp.Do(ctx, chromedp.Navigate(d.filesURL(id, name)), chromedp.Sleep(2*time.Second))
		cancel()
		ctx, cancel = context.WithTimeout(tab, 15*time.Second)
		shown, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.documentElement.outerHTML`))
		cancel()
		closeTab()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if strings.Contains(shown, "script ran") || strings.Contains(shown, "<p>rendered</p>") {
			t.Errorf("%s ran as a page on the API's origin:\n%s", name, shown)
		}
		if name == "notes.txt" && (navErr != nil || !strings.Contains(shown, "plain notes")) {
			t.Errorf("notes.txt is not shown as text: %v\n%s", navErr, shown)
		}
		resp, _ := d.getFile(t, id, name)
		if got := resp.Header.Get("X-Content-Type-Options"); got != "nosniff" {
			t.Errorf("%s: X-Content-Type-Options %q", name, got)
		}
	}
	if list := d.list(t); len(list) != 1 {
		t.Errorf("contexts after opening the files: %+v", list)
	}
}

// refused counts the requests the daemon answered with 403, from its
// metrics.
func (d *daemon) refused(tb testing.TB) int {
	tb.Helper()
	resp, err := http.Get(d.url + "/metrics")
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	n := 0
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Bytes()
		if !bytes.HasPrefix(line, []byte("sandboxd_http_requests_total{")) || !bytes.Contains(line, []byte(`code="403"`)) {
			continue
		}
		f := bytes.Fields(line)
		v, _ := strconv.ParseFloat(string(f[len(f)-1]), 64)
		n += int(v)
	}
	return n
}
