// A Go LLM client for agtap's bpf tier: standard library only, like a Go service calling
// the Anthropic, OpenAI or Gemini API with net/http (no SDK). It talks to the test's local
// fake API and prints one JSON line: its pid and what it parsed from each answer.
//
//	llmclient -url https://127.0.0.1:PORT -mode MODE[,MODE...] [-n N] [-parallel P] [-depth D] [-wait]
//
// Modes: anthropic, anthropic-stream, openai-chat, openai-chat-stream, gemini, gemini-stream
// (net/http, one shared http.Client); raw-stream (crypto/tls directly: each Read into a
// buffer on the reading goroutine's stack, from goroutines near the end of their stacks,
// so that stacks move during Read; see readGrowing).
// Each goroutine makes, N times, one call of each mode in turn; -parallel goroutines at
// once (sharing one http.Client), -depth frames of recursion around every call, -h2 lets
// net/http speak HTTP/2 to a server that offers it (ALPN). -wait reads
// a line from stdin before the first call (the test lets the tracer see the process first)
// and, after printing the results, waits for stdin to close (the process is still there when
// the tracer looks at it). -timing makes one untimed call first (set-up) and reports the
// wall and CPU seconds (getrusage) of the others: the bench (bench/b8_gotls.py).
// The CA is AGTAP_TEST_CA, the key AGTAP_TEST_API_KEY.
package main

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"
)

type result struct {
	Marker       string `json:"marker"`
	Mode         string `json:"mode"`
	Status       int    `json:"status"`
	Proto        string `json:"proto,omitempty"`
	Text         string `json:"text"`
	Model        string `json:"model"`
	InputTokens  int    `json:"input_tokens"`
	OutputTokens int    `json:"output_tokens"`
	Events       int    `json:"events"`
	Error        string `json:"error,omitempty"`
}

var (
	base, key string
	client    *http.Client
	tlsConfig *tls.Config
)

func main() {
	flag.StringVar(&base, "url", "", "base URL of the API")
	modeList := flag.String("mode", "anthropic", "request kinds, comma-separated")
	n := flag.Int("n", 1, "calls per goroutine")
	parallel := flag.Int("parallel", 1, "goroutines")
	depth := flag.Int("depth", 0, "recursion depth around each call")
	wait := flag.Bool("wait", false, "read a line from stdin before the first call")
	timing := flag.Bool("timing", false, "one untimed call first; report the wall and CPU time of the others")
	h2 := flag.Bool("h2", false, "HTTP/2 when the server offers it (net/http's default without a custom TLS config)")
	flag.Parse()
	key = os.Getenv("AGTAP_TEST_API_KEY")
	tlsConfig = &tls.Config{} // the system's roots (SSL_CERT_FILE too) unless AGTAP_TEST_CA names a CA
	if ca := os.Getenv("AGTAP_TEST_CA"); ca != "" {
		pem, err := os.ReadFile(ca)
		if err != nil {
			fail(err)
		}
		tlsConfig.RootCAs = x509.NewCertPool()
		tlsConfig.RootCAs.AppendCertsFromPEM(pem)
	}
	client = &http.Client{Transport: &http.Transport{TLSClientConfig: tlsConfig, MaxIdleConnsPerHost: *parallel,
		ForceAttemptHTTP2: *h2}}
	stdin := bufio.NewReader(os.Stdin)
	if *wait {
		fmt.Printf("{\"pid\": %d, \"waiting\": true}\n", os.Getpid())
		stdin.ReadString('\n')
	}
	modes := strings.Split(*modeList, ",")
	for _, m := range modes {
		request(m, "") // an unknown mode fails here, before any call
	}
	if *timing {
		call("anthropic", "warm-up") // the TLS handshake and connection set-up are not measured
	}
	var ru0 syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru0)
	t0 := time.Now()
	per := *n * len(modes)
	results := make([]result, *parallel*per)
	var wg sync.WaitGroup
	for g := 0; g < *parallel; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < per; i++ {
				marker := fmt.Sprintf("marker-%d-%d", g, i)
				mode := modes[i%len(modes)]
				results[g*per+i] = deep(*depth, func() result { return call(mode, marker) })
			}
		}(g)
	}
	wg.Wait()
	wall := time.Since(t0).Seconds()
	var ru1 syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru1)
	cpu := func(ru syscall.Rusage) float64 {
		return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
	}
	out, _ := json.Marshal(map[string]any{"pid": os.Getpid(), "results": results,
		"stack_moves": stackMoves.Load(), "wall": wall, "cpu": cpu(ru1) - cpu(ru0)})
	fmt.Println(string(out))
	if *wait {
		io.Copy(io.Discard, stdin)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, err)
	os.Exit(1)
}

// deep runs f under `depth` frames of recursion, each with its own stack space.
//
//go:noinline
func deep(depth int, f func() result) result {
	var pad [256]byte
	pad[depth%256] = byte(depth)
	if depth <= 0 {
		return f()
	}
	r := deep(depth-1, f)
	if pad[depth%256] != byte(depth) {
		panic("stack corrupted")
	}
	return r
}

func request(mode, marker string) (path string, body map[string]any) {
	prompt := "Say hi. " + marker
	switch mode {
	case "anthropic", "anthropic-stream", "raw-stream":
		return "/v1/messages", map[string]any{"model": "claude-go-test", "max_tokens": 64,
			"stream": mode != "anthropic", "messages": []any{map[string]any{"role": "user", "content": prompt}}}
	case "openai-chat", "openai-chat-stream":
		b := map[string]any{"model": "gpt-go-test", "stream": mode == "openai-chat-stream",
			"messages": []any{map[string]any{"role": "user", "content": prompt}}}
		if mode == "openai-chat-stream" {
			b["stream_options"] = map[string]any{"include_usage": true}
		}
		return "/v1/chat/completions", b
	case "gemini":
		return "/v1beta/models/gemini-go-test:generateContent", map[string]any{
			"contents": []any{map[string]any{"role": "user", "parts": []any{map[string]any{"text": prompt}}}}}
	case "gemini-stream":
		return "/v1beta/models/gemini-go-test:streamGenerateContent?alt=sse", map[string]any{
			"contents": []any{map[string]any{"role": "user", "parts": []any{map[string]any{"text": prompt}}}}}
	}
	fail(fmt.Errorf("unknown mode %q", mode))
	return
}

func call(mode, marker string) result {
	path, body := request(mode, marker)
	payload, _ := json.Marshal(body)
	if mode == "raw-stream" {
		return rawCall(marker, path, payload)
	}
	req, err := http.NewRequest("POST", base+path, bytes.NewReader(payload))
	if err != nil {
		fail(err)
	}
	req.Header.Set("content-type", "application/json")
	switch {
	case strings.HasPrefix(mode, "anthropic"):
		req.Header.Set("x-api-key", key)
		req.Header.Set("anthropic-version", "2023-06-01")
	case strings.HasPrefix(mode, "openai"):
		req.Header.Set("authorization", "Bearer "+key)
	default:
		req.Header.Set("x-goog-api-key", key)
	}
	resp, err := client.Do(req)
	if err != nil {
		return result{Marker: marker, Mode: mode, Error: err.Error()}
	}
	defer resp.Body.Close()
	r := result{Marker: marker, Mode: mode, Status: resp.StatusCode, Proto: resp.Proto}
	if strings.HasPrefix(resp.Header.Get("content-type"), "text/event-stream") {
		// SSE, line by line, as SDKs read it
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 1<<16), 1<<22)
		for sc.Scan() {
			line := sc.Text()
			if !strings.HasPrefix(line, "data:") {
				continue
			}
			data := strings.TrimSpace(line[5:])
			if data == "[DONE]" {
				continue
			}
			var ev map[string]any
			if json.Unmarshal([]byte(data), &ev) == nil {
				r.Events++
				absorb(&r, ev)
			}
		}
		if err := sc.Err(); err != nil {
			r.Error = err.Error()
		}
		return r
	}
	var doc map[string]any
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		r.Error = err.Error()
	} else if err := json.Unmarshal(raw, &doc); err != nil {
		r.Error = err.Error()
	} else {
		absorb(&r, doc)
	}
	return r
}

// absorb takes text, model and token counts from a response document or stream event of
// any of the three providers.
func absorb(r *result, ev map[string]any) {
	str := func(v any) string { s, _ := v.(string); return s }
	num := func(v any) int { f, _ := v.(float64); return int(f) }
	obj := func(v any) map[string]any { m, _ := v.(map[string]any); return m }
	arr := func(v any) []any { a, _ := v.([]any); return a }
	if m := str(ev["model"]); m != "" {
		r.Model = m
	}
	if m := str(ev["modelVersion"]); m != "" {
		r.Model = m
	}
	// Anthropic
	if msg := obj(ev["message"]); msg != nil {
		r.Model = str(msg["model"])
		if u := obj(msg["usage"]); u != nil {
			r.InputTokens = num(u["input_tokens"])
		}
	}
	for _, c := range arr(ev["content"]) {
		r.Text += str(obj(c)["text"])
	}
	if d := obj(ev["delta"]); d != nil {
		r.Text += str(d["text"])
	}
	if u := obj(ev["usage"]); u != nil {
		if v, ok := u["input_tokens"]; ok {
			r.InputTokens = num(v)
		}
		if v, ok := u["output_tokens"]; ok {
			r.OutputTokens = num(v)
		}
		if v, ok := u["prompt_tokens"]; ok { // OpenAI
			r.InputTokens = num(v)
		}
		if v, ok := u["completion_tokens"]; ok {
			r.OutputTokens = num(v)
		}
	}
	// OpenAI
	for _, c := range arr(ev["choices"]) {
		ch := obj(c)
		r.Text += str(obj(ch["message"])["content"]) + str(obj(ch["delta"])["content"])
	}
	// Gemini
	for _, c := range arr(ev["candidates"]) {
		for _, p := range arr(obj(obj(c)["content"])["parts"]) {
			r.Text += str(obj(p)["text"])
		}
	}
	if u := obj(ev["usageMetadata"]); u != nil {
		r.InputTokens = num(u["promptTokenCount"])
		r.OutputTokens = num(u["candidatesTokenCount"])
	}
}

// stack moves seen by ioGrowing, for the test to know it tested what it meant to
var stackMoves atomic.Int64

// rawCall sends the request on a crypto/tls connection of its own (Connection: close) and
// reads the whole answer, each Read through inGoroutine. It parses the SSE
// stream from what it read.
func rawCall(marker, path string, payload []byte) result {
	u, err := url.Parse(base)
	if err != nil {
		fail(err)
	}
	conn, err := tls.Dial("tcp", u.Host, tlsConfig)
	if err != nil {
		return result{Marker: marker, Error: err.Error()}
	}
	defer conn.Close()
	head := fmt.Sprintf("POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n"+
		"x-api-key: %s\r\nanthropic-version: 2023-06-01\r\nContent-Length: %d\r\nConnection: close\r\n\r\n",
		path, u.Host, key, len(payload))
	if _, err := conn.Write(append([]byte(head), payload...)); err != nil {
		return result{Marker: marker, Error: err.Error()}
	}
	var all []byte
	for i := 0; ; i++ {
		rr := inGoroutine(conn, i)
		all = append(all, rr.data...)
		if rr.err != nil {
			break
		}
	}
	r := result{Marker: marker, Mode: "raw-stream"}
	text := string(all)
	if i := strings.Index(text, "\r\n\r\n"); i > 0 {
		fmt.Sscanf(text, "HTTP/1.1 %d", &r.Status)
		text = text[i+4:]
	}
	for _, line := range strings.Split(text, "\n") {
		if strings.HasPrefix(line, "data:") {
			var ev map[string]any
			if json.Unmarshal([]byte(strings.TrimSpace(line[5:])), &ev) == nil {
				r.Events++
				absorb(&r, ev)
			}
		}
	}
	return r
}

const ioSize = 48

type ioResult struct {
	data []byte
	err  error
}

// inGoroutine runs one Read in a new goroutine (a new, small stack), `i % 64` frames deep:
// some of them call Read close enough to the end of their stack that Read's own calls make
// the runtime copy the stack to a bigger one, the buffer with it.
func inGoroutine(conn *tls.Conn, i int) ioResult {
	ch := make(chan ioResult)
	go func() { ch <- atDepth(conn, i%64) }()
	return <-ch
}

//go:noinline
func atDepth(conn *tls.Conn, depth int) ioResult {
	var pad [64]byte
	pad[depth%64] = 1
	if depth > 0 {
		r := atDepth(conn, depth-1)
		if pad[depth%64] != 1 {
			panic("stack corrupted")
		}
		return r
	}
	return readGrowing(conn)
}

// readGrowing reads into a buffer on this goroutine's stack and counts the Reads during
// which the stack moved (the buffer's address changed: the runtime copied the stack). Only
// Read can be given a stack buffer: Write's escapes to the heap (the compiler says so).
//
//go:noinline
func readGrowing(conn *tls.Conn) ioResult {
	var buf [ioSize]byte
	before := uintptr(unsafe.Pointer(&buf[0]))
	n, err := conn.Read(buf[:])
	if uintptr(unsafe.Pointer(&buf[0])) != before {
		stackMoves.Add(1)
	}
	return ioResult{data: append([]byte(nil), buf[:n]...), err: err}
}
