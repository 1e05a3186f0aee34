// Command loadgen is the load generator of `rtm2 bench peers`: one publisher and N subscribers
// speaking raw wire protocols (rtm2's WebSocket + MessagePack, Redis RESP, the NATS text
// protocol), one goroutine per subscriber connection.
//
// It reads one JSON spec on stdin, runs one measurement (throughput or paced latency) against
// one server and prints one JSON result on stdout. The Python side (src/rtm2/cli/loadgen.py)
// builds it, encodes rtm2's request frames from protocol/frames.py into the spec, and folds the
// result into the same tables as its own asyncio load.
//
// Every message's 128-byte payload starts with its sequence number and its send time (both
// big-endian uint64; the time in nanoseconds on this process's monotonic clock), so a
// subscriber reads both at fixed offsets once it has found the payload in a delivery.
package main

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Template is a ready publish frame: the payload (and rtm2's request id) are patched in place.
type Template struct {
	Frame         []byte `json:"frame"` // base64 in the JSON
	PayloadOffset int    `json:"payload_offset"`
	RidOffset     int    `json:"rid_offset"` // where a big-endian uint64 request id goes; -1: none
}

// Spec is what one run does; the field names are the JSON keys the Python side writes.
type Spec struct {
	System      string   `json:"system"` // rtm2, redis or nats
	Host        string   `json:"host"`
	Port        int      `json:"port"`
	Mode        string   `json:"mode"` // throughput or latency
	Subscribers int      `json:"subscribers"`
	Seconds     float64  `json:"seconds"`
	Rate        float64  `json:"rate"`           // latency: messages/s
	Window      int      `json:"window"`         // throughput: messages per write
	Warmup      int      `json:"warmup_windows"` // throughput: windows before measuring
	Settle      float64  `json:"settle_seconds"` // pause between opening and publishing
	Timeout     float64  `json:"timeout_seconds"`
	Channel     string   `json:"channel"`
	Size        int      `json:"size"`
	ServerPID   int      `json:"server_pid"`  // 0: no server CPU
	ClockTicks  int      `json:"clock_ticks"` // of /proc/<pid>/stat, os.sysconf("SC_CLK_TCK")
	Publish     Template `json:"publish"`
	StartRid    uint64   `json:"start_rid"`
	// rtm2 only: a Logout frame written to every connection at the end. A connection that just
	// closes leaves its session present and subscribed for its presence timeout, and the next
	// measurements' publishes would go to it too.
	Goodbye []byte `json:"goodbye"`
	// rtm2 only: per connection, the WebSocket frames (masked, ready to write) sent one by one
	// once upgraded, each answered by a Reply that must carry code 0.
	SubscriberHandshakes [][][]byte `json:"subscriber_handshakes"`
	PublisherHandshake   [][]byte   `json:"publisher_handshake"`
}

// Result is printed as JSON on stdout.
type Result struct {
	System          string           `json:"system"`
	Mode            string           `json:"mode"`
	Subscribers     int              `json:"subscribers"`
	Messages        int64            `json:"messages"`
	Deliveries      int64            `json:"deliveries"`
	Elapsed         float64          `json:"elapsed_s"`
	DeliveriesPerS  float64          `json:"deliveries_per_s"`
	PublishedPerS   float64          `json:"published_per_s"`
	ServerCPU       float64          `json:"server_cpu_s"`
	CPUPerDelivery  float64          `json:"cpu_us_per_delivery"`
	LoadCPU         float64          `json:"load_cpu"`        // this process: CPU seconds / elapsed
	LoadCPUKernel   float64          `json:"load_cpu_kernel"` // the part of it in the kernel
	Samples         int              `json:"samples"`
	P50             float64          `json:"p50_ms"`
	P90             float64          `json:"p90_ms"`
	P99             float64          `json:"p99_ms"`
	P999            float64          `json:"p999_ms"`
	Max             float64          `json:"max_ms"`
	Histogram       []Bucket         `json:"histogram"`
	Slowest         []Slow           `json:"slowest"`
	Lost            int64            `json:"lost"`
	Reordered       int64            `json:"reordered"`
	Errors          int64            `json:"errors"`
	Acks            int64            `json:"acks"`
	TimedOut        bool             `json:"timed_out"`
	GCs             uint32           `json:"gcs"`
	GoVersion       string           `json:"go_version"`
	GOMAXPROCS      int              `json:"gomaxprocs"`
	PerSubscriber   map[string]int64 `json:"deliveries_min_max"`
	LatePublishesMs float64          `json:"publisher_late_max_ms"`
	// Time the server's and this process's threads spent ready to run but waiting for a CPU
	// (/proc/<pid>/task/*/schedstat) during the measurement: on a machine shared with other
	// work, the part of the latency that neither process caused.
	ServerWaitMs float64 `json:"server_runqueue_wait_ms"`
	LoadWaitMs   float64 `json:"load_runqueue_wait_ms"`
}

// Bucket counts the samples at or below UpToMs (and above the previous bucket's bound).
type Bucket struct {
	UpToMs float64 `json:"up_to_ms"` // 0 on the last bucket: everything above
	Count  int     `json:"count"`
}

// Slow is one of the slowest deliveries: when it was sent (ms from the first publish) and how
// long it took, to see whether spikes come at a period (a once-a-second sweep, say).
type Slow struct {
	SentMs    float64 `json:"sent_ms"`
	LatencyMs float64 `json:"latency_ms"`
}

var base = time.Now()

// mono is nanoseconds on the monotonic clock since the process started.
func mono() int64 { return int64(time.Since(base)) }

func main() {
	var spec Spec
	if err := json.NewDecoder(os.Stdin).Decode(&spec); err != nil {
		fail("reading the spec on stdin: %v", err)
	}
	if path := os.Getenv("LOADGEN_CPUPROFILE"); path != "" {
		// For `go tool pprof`: where the generator's own CPU goes.
		f, err := os.Create(path)
		if err != nil {
			fail("%v", err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			fail("%v", err)
		}
		defer pprof.StopCPUProfile()
	}
	res, err := run(&spec)
	if err != nil {
		fail("%s: %v", spec.System, err)
	}
	out := json.NewEncoder(os.Stdout)
	if err := out.Encode(res); err != nil {
		fail("writing the result: %v", err)
	}
}

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "loadgen: "+format+"\n", args...)
	os.Exit(1)
}

func (s *Spec) check() error {
	if s.Subscribers < 1 {
		return fmt.Errorf("subscribers must be at least 1")
	}
	if s.Size < 16 || s.Publish.PayloadOffset < 0 ||
		s.Publish.PayloadOffset+s.Size > len(s.Publish.Frame) {
		return fmt.Errorf("the publish template has no %d-byte payload at %d", s.Size,
			s.Publish.PayloadOffset)
	}
	if s.Publish.RidOffset >= 0 && s.Publish.RidOffset+8 > len(s.Publish.Frame) {
		return fmt.Errorf("the publish template has no request id at %d", s.Publish.RidOffset)
	}
	switch s.Mode {
	case "latency":
		if s.Rate <= 0 {
			return fmt.Errorf("latency needs a rate")
		}
	case "throughput":
		if s.Window < 1 {
			return fmt.Errorf("throughput needs a window")
		}
	default:
		return fmt.Errorf("unknown mode %q", s.Mode)
	}
	if s.System == "rtm2" && len(s.SubscriberHandshakes) != s.Subscribers {
		return fmt.Errorf("%d subscriber handshakes for %d subscribers",
			len(s.SubscriberHandshakes), s.Subscribers)
	}
	if s.Timeout <= 0 {
		s.Timeout = 30
	}
	return nil
}

// --- the shared tally ------------------------------------------------------------------------

// tally is what the subscriber goroutines report to the publisher while the run goes on.
type tally struct {
	delivered atomic.Int64
	target    atomic.Int64
	wake      chan struct{}
}

func (t *tally) add(n int64) {
	if t.delivered.Add(n) >= t.target.Load() {
		select {
		case t.wake <- struct{}{}:
		default:
		}
	}
}

// waitFor blocks until total deliveries in all have arrived; false on timeout.
func (t *tally) waitFor(total int64, timeout time.Duration) bool {
	t.target.Store(total)
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for t.delivered.Load() < total {
		select {
		case <-t.wake:
		case <-deadline.C:
			return t.delivered.Load() >= total
		}
	}
	return true
}

// subscriber is one subscriber connection and what its goroutine saw; read only after the
// goroutine ended.
type subscriber struct {
	c         *conn
	next      uint64
	got       int64
	reordered int64
	lat       []int64 // publish-to-receive, ns
	sent      []int64 // send time of each sample, ns, for the slowest ones
	err       error
}

func (s *subscriber) run(p proto, t *tally, measure bool, size int, done *atomic.Bool) {
	err := s.c.stream(func(now int64) bool { return s.take(p, t, measure, size, now) })
	if done.Load() {
		s.err = nil // the end: the server closing (after a logout) is no error
	} else if s.err == nil {
		s.err = err
	}
}

// take handles every complete item in the buffer, read at now; false on an error (s.err).
func (s *subscriber) take(p proto, t *tally, measure bool, size int, now int64) bool {
	c := s.c
	var batch int64
	for {
		k, payload, n, err := p.parse(c.buf[c.r:c.w])
		if err != nil {
			s.err = err
			return false
		}
		if n == 0 {
			break
		}
		c.r += n
		switch k {
		case kDelivery:
			if len(payload) != size {
				s.err = fmt.Errorf("a delivery of %d bytes, not %d", len(payload), size)
				return false
			}
			seq := binary.BigEndian.Uint64(payload)
			if seq != s.next {
				s.reordered++
			}
			s.next = seq + 1
			if measure {
				sent := int64(binary.BigEndian.Uint64(payload[8:]))
				s.lat = append(s.lat, now-sent)
				s.sent = append(s.sent, sent)
			}
			batch++
		case kPing:
			if err := c.write([]byte("PONG\r\n")); err != nil {
				s.err = err
				return false
			}
		}
	}
	if batch > 0 {
		s.got += batch
		t.add(batch)
	}
	return true
}

// publisher counts the acknowledgements of its publishes (rtm2 replies, Redis' integer
// replies) and NATS' PONGs on its own goroutine.
type publisher struct {
	c       *conn
	acks    atomic.Int64
	refused atomic.Int64
	pongs   chan struct{}
	err     error
}

func (pb *publisher) run(p proto, done *atomic.Bool) {
	err := pb.c.stream(func(int64) bool { return pb.take(p) })
	if done.Load() {
		pb.err = nil
	} else if pb.err == nil {
		pb.err = err
	}
}

func (pb *publisher) take(p proto) bool {
	c := pb.c
	for {
		k, _, n, err := p.parse(c.buf[c.r:c.w])
		if err != nil {
			pb.err = err
			return false
		}
		if n == 0 {
			return true
		}
		c.r += n
		switch k {
		case kAck:
			pb.acks.Add(1)
		case kRefused:
			pb.refused.Add(1)
		case kPong:
			select {
			case pb.pongs <- struct{}{}:
			default:
			}
		case kPing:
			if err := c.write([]byte("PONG\r\n")); err != nil {
				pb.err = err
				return false
			}
		}
	}
}

// --- one run ---------------------------------------------------------------------------------

func run(spec *Spec) (*Result, error) {
	if err := spec.check(); err != nil {
		return nil, err
	}
	p, err := protocolFor(spec)
	if err != nil {
		return nil, err
	}
	addr := net.JoinHostPort(spec.Host, strconv.Itoa(spec.Port))
	measure := spec.Mode == "latency"
	perSub := 0
	if measure {
		perSub = int(spec.Rate*spec.Seconds) + 16
	}
	t := &tally{wake: make(chan struct{}, 1)}
	var done atomic.Bool
	var wg sync.WaitGroup
	subs := make([]*subscriber, spec.Subscribers)
	var pub *publisher
	defer func() {
		done.Store(true)
		for _, s := range subs {
			if s != nil {
				s.c.close()
			}
		}
		if pub != nil {
			pub.c.close()
		}
		wg.Wait()
	}()
	for i := range subs {
		c, err := p.openSubscriber(addr, i)
		if err != nil {
			return nil, fmt.Errorf("subscriber %d: %w", i, err)
		}
		subs[i] = &subscriber{c: c, lat: make([]int64, 0, perSub), sent: make([]int64, 0, perSub)}
	}
	c, err := p.openPublisher(addr)
	if err != nil {
		return nil, fmt.Errorf("publisher: %w", err)
	}
	pub = &publisher{c: c, pongs: make(chan struct{}, 1)}
	for _, s := range subs {
		wg.Add(1)
		go func(s *subscriber) {
			defer wg.Done()
			s.run(p, t, measure, spec.Size, &done)
		}(s)
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		pub.run(p, &done)
	}()
	time.Sleep(time.Duration(spec.Settle * float64(time.Second)))

	// The hot path allocates nothing (buffers and sample slices are made above): no collector
	// pauses of this process in the figures.
	debug.SetGCPercent(-1)
	var before runtime.MemStats
	runtime.ReadMemStats(&before)

	gen := &frames{tpl: spec.Publish, size: spec.Size, rid: spec.StartRid}
	res := &Result{
		System: spec.System, Mode: spec.Mode, Subscribers: spec.Subscribers,
		GoVersion: runtime.Version(), GOMAXPROCS: runtime.GOMAXPROCS(0),
	}
	timeout := time.Duration(spec.Timeout * float64(time.Second))
	n := int64(spec.Subscribers)
	var published, counted int64
	var elapsed time.Duration
	var serverCPU, loadCPU float64
	if measure {
		total := int64(spec.Rate * spec.Seconds)
		cpu0, mine0, sys0 := serverSeconds(spec), ownSeconds(), ownKernelSeconds()
		wait0, ownWait0 := runqueueWait(spec.ServerPID), runqueueWait(os.Getpid())
		start := mono()
		var late int64
		for seq := int64(0); seq < total; seq++ {
			due := start + int64(float64(seq)/spec.Rate*1e9)
			if d := due - mono(); d > 0 {
				time.Sleep(time.Duration(d))
			} else if -d > late {
				late = -d
			}
			if err := c.write(gen.one(uint64(seq), mono())); err != nil {
				return nil, err
			}
		}
		published = total
		res.PublishedPerS = float64(total) / (float64(mono()-start) / 1e9)
		res.TimedOut = !t.waitFor(total*n, timeout)
		elapsed = time.Duration(mono() - start)
		serverCPU = serverSeconds(spec) - cpu0
		loadCPU = ownSeconds() - mine0
		res.LoadCPUKernel = ownKernelSeconds() - sys0
		res.ServerWaitMs = float64(runqueueWait(spec.ServerPID)-wait0) / 1e6
		res.LoadWaitMs = float64(runqueueWait(os.Getpid())-ownWait0) / 1e6
		counted = total
		res.LatePublishesMs = float64(late) / 1e6
	} else {
		window := spec.Window
		seq := uint64(0)
		send := func() error {
			err := c.write(gen.window(seq, window, mono()))
			seq += uint64(window)
			return err
		}
		for i := 0; i < spec.Warmup && !res.TimedOut; i++ {
			if err := send(); err != nil {
				return nil, err
			}
			res.TimedOut = !t.waitFor(int64(seq)*n, timeout)
		}
		from := seq
		cpu0, mine0, sys0 := serverSeconds(spec), ownSeconds(), ownKernelSeconds()
		wait0, ownWait0 := runqueueWait(spec.ServerPID), runqueueWait(os.Getpid())
		start := mono()
		if err := send(); err != nil {
			return nil, err
		}
		for !res.TimedOut {
			if err := send(); err != nil {
				return nil, err
			}
			res.TimedOut = !t.waitFor(int64(seq-uint64(window))*n, timeout)
			if float64(mono()-start) >= spec.Seconds*1e9 {
				break
			}
		}
		if !res.TimedOut {
			res.TimedOut = !t.waitFor(int64(seq)*n, timeout)
		}
		elapsed = time.Duration(mono() - start)
		serverCPU = serverSeconds(spec) - cpu0
		loadCPU = ownSeconds() - mine0
		res.LoadCPUKernel = ownKernelSeconds() - sys0
		res.ServerWaitMs = float64(runqueueWait(spec.ServerPID)-wait0) / 1e6
		res.LoadWaitMs = float64(runqueueWait(os.Getpid())-ownWait0) / 1e6
		published = int64(seq)
		counted = int64(seq - from)
		res.PublishedPerS = float64(counted) / elapsed.Seconds()
	}
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	res.GCs = after.NumGC - before.NumGC

	if !res.TimedOut {
		if err := settle(p, pub, published, timeout); err != nil {
			return nil, err
		}
	}
	res.Acks = pub.acks.Load()
	res.Errors = pub.refused.Load()
	done.Store(true)
	if len(spec.Goodbye) > 0 {
		for _, s := range subs {
			_ = s.c.write(spec.Goodbye)
		}
		_ = pub.c.write(spec.Goodbye)
		// The server answers and closes each connection; its goroutine then ends.
		ended := make(chan struct{})
		go func() {
			wg.Wait()
			close(ended)
		}()
		select {
		case <-ended:
		case <-time.After(10 * time.Second):
		}
	}
	for _, s := range subs {
		s.c.close()
	}
	pub.c.close()
	wg.Wait()
	if pub.err != nil {
		return nil, fmt.Errorf("publisher: %w", pub.err)
	}

	res.Messages = counted
	res.Deliveries = counted * n
	res.Elapsed = elapsed.Seconds()
	res.DeliveriesPerS = float64(res.Deliveries) / res.Elapsed
	res.ServerCPU = serverCPU
	if res.Deliveries > 0 {
		res.CPUPerDelivery = serverCPU / float64(res.Deliveries) * 1e6
	}
	res.LoadCPU = loadCPU / res.Elapsed
	res.LoadCPUKernel /= res.Elapsed
	lo, hi := int64(-1), int64(0)
	for i, s := range subs {
		if s.err != nil {
			return nil, fmt.Errorf("subscriber %d: %w", i, s.err)
		}
		res.Lost += published - int64(s.next)
		res.Reordered += s.reordered
		if lo < 0 || s.got < lo {
			lo = s.got
		}
		hi = max(hi, s.got)
	}
	res.PerSubscriber = map[string]int64{"min": lo, "max": hi}
	summarize(res, subs)
	return res, nil
}

// settle waits until the server has taken every publish: rtm2 and Redis acknowledge each one;
// NATS answers a PING once it has handled what came before.
func settle(p proto, pub *publisher, published int64, timeout time.Duration) error {
	if !p.acknowledges() {
		if err := pub.c.write([]byte("PING\r\n")); err != nil {
			return err
		}
		select {
		case <-pub.pongs:
		case <-time.After(timeout):
		}
		return nil
	}
	deadline := time.Now().Add(timeout)
	for pub.acks.Load()+pub.refused.Load() < published && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	return nil
}

// --- publish frames --------------------------------------------------------------------------

type frames struct {
	tpl  Template
	size int
	rid  uint64
	buf  []byte
}

// put writes the payload (and request id) of message seq into a copy of the template.
func (f *frames) put(dst []byte, seq uint64, now int64) {
	if f.tpl.RidOffset >= 0 {
		binary.BigEndian.PutUint64(dst[f.tpl.RidOffset:], f.rid)
		f.rid++
	}
	p := dst[f.tpl.PayloadOffset : f.tpl.PayloadOffset+f.size]
	binary.BigEndian.PutUint64(p, seq)
	binary.BigEndian.PutUint64(p[8:], uint64(now))
}

func (f *frames) one(seq uint64, now int64) []byte {
	if f.buf == nil {
		f.buf = append([]byte(nil), f.tpl.Frame...)
	}
	f.put(f.buf[:len(f.tpl.Frame)], seq, now)
	return f.buf[:len(f.tpl.Frame)]
}

func (f *frames) window(seq uint64, count int, now int64) []byte {
	size := len(f.tpl.Frame)
	if len(f.buf) != size*count {
		f.buf = make([]byte, 0, size*count)
		for i := 0; i < count; i++ {
			f.buf = append(f.buf, f.tpl.Frame...)
		}
	}
	for i := 0; i < count; i++ {
		f.put(f.buf[i*size:(i+1)*size], seq+uint64(i), now)
	}
	return f.buf
}

// --- CPU -------------------------------------------------------------------------------------

// serverSeconds is the server process's user+system CPU time, from /proc/<pid>/stat.
func serverSeconds(spec *Spec) float64 {
	if spec.ServerPID <= 0 {
		return 0
	}
	data, err := os.ReadFile("/proc/" + strconv.Itoa(spec.ServerPID) + "/stat")
	if err != nil {
		return 0
	}
	// The command name (field 2) may hold spaces; fields count from after its ")".
	i := len(data) - 1
	for i >= 0 && data[i] != ')' {
		i--
	}
	fields := splitFields(data[i+1:])
	if len(fields) < 13 {
		return 0
	}
	utime, _ := strconv.ParseInt(fields[11], 10, 64)
	stime, _ := strconv.ParseInt(fields[12], 10, 64)
	ticks := spec.ClockTicks
	if ticks <= 0 {
		ticks = 100
	}
	return float64(utime+stime) / float64(ticks)
}

func splitFields(b []byte) []string {
	var out []string
	start := -1
	for i, ch := range b {
		if ch == ' ' || ch == '\n' {
			if start >= 0 {
				out = append(out, string(b[start:i]))
				start = -1
			}
		} else if start < 0 {
			start = i
		}
	}
	if start >= 0 {
		out = append(out, string(b[start:]))
	}
	return out
}

// runqueueWait is the nanoseconds the threads of process pid spent waiting for a CPU, summed
// over its threads alive now (the second field of each /proc/<pid>/task/<tid>/schedstat).
func runqueueWait(pid int) int64 {
	if pid <= 0 {
		return 0
	}
	dir := "/proc/" + strconv.Itoa(pid) + "/task"
	tasks, err := os.ReadDir(dir)
	if err != nil {
		return 0
	}
	var total int64
	for _, task := range tasks {
		data, err := os.ReadFile(dir + "/" + task.Name() + "/schedstat")
		if err != nil {
			continue
		}
		if fields := splitFields(data); len(fields) >= 2 {
			v, _ := strconv.ParseInt(fields[1], 10, 64)
			total += v
		}
	}
	return total
}

// ownKernelSeconds is this process's system CPU time: at 1,000 msg/s most of the generator's
// CPU is the kernel's TCP receive path under read(), whatever the language above it.
func ownKernelSeconds() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return float64(ru.Stime.Nano()) / 1e9
}

// ownSeconds is this process's user+system CPU time.
func ownSeconds() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
}

// --- connections -----------------------------------------------------------------------------

// conn is a TCP connection with a read buffer parsed in place.
type conn struct {
	c    net.Conn
	buf  []byte
	r, w int
}

func dial(addr string) (*conn, error) {
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return nil, err
	}
	// Go sets TCP_NODELAY on TCP connections by default, as the Python clients do by hand.
	return &conn{c: c, buf: make([]byte, 64<<10)}, nil
}

// stream reads the socket for as long as handle returns true, calling it after each read with
// the time the read returned. It makes one read() per wake-up where conn.Read makes two (the
// second to find the socket drained): Go's poller is edge-triggered, so a read that did not
// fill the buffer can wait for the next edge, which any data arriving after the wake-up
// raises. This halves the system calls per delivery at 1,000 msg/s.
func (c *conn) stream(handle func(now int64) bool) error {
	raw, err := c.c.(*net.TCPConn).SyscallConn()
	if err != nil {
		return err
	}
	var ioErr error
	err = raw.Read(func(fd uintptr) bool {
		for {
			c.room()
			n, err := syscall.Read(int(fd), c.buf[c.w:])
			now := mono()
			switch {
			case err == syscall.EAGAIN:
				return false // wait until readable
			case err == syscall.EINTR:
				continue
			case err != nil:
				ioErr = err
				return true
			case n == 0:
				ioErr = io.EOF
				return true
			}
			full := c.w+n == len(c.buf)
			c.w += n
			if !handle(now) {
				return true
			}
			if !full {
				return false
			}
		}
	})
	if ioErr != nil {
		return ioErr
	}
	if err == nil {
		err = io.ErrUnexpectedEOF // handle refused what it read: its error says why
	}
	return err
}

// room moves the unparsed bytes to the front of the buffer and doubles the buffer when they
// fill it, so that a read has room after them.
func (c *conn) room() {
	if c.r > 0 {
		c.w = copy(c.buf, c.buf[c.r:c.w])
		c.r = 0
	}
	if c.w == len(c.buf) {
		grown := make([]byte, 2*len(c.buf))
		copy(grown, c.buf[:c.w])
		c.buf = grown
	}
}

// fill reads what the socket has (at least one byte) after the unparsed bytes, and returns the
// time the read returned: the receive time of every delivery in it.
func (c *conn) fill() (int64, error) {
	c.room()
	n, err := c.c.Read(c.buf[c.w:])
	now := mono()
	if n > 0 {
		c.w += n
		return now, nil
	}
	if err == nil {
		err = io.ErrNoProgress
	}
	return now, err
}

func (c *conn) write(b []byte) error {
	_, err := c.c.Write(b)
	return err
}

func (c *conn) close() { _ = c.c.Close() }

// await reads until parse reports want; a refusal or another error ends it.
func (c *conn) await(p proto, want kind, deadline time.Time) error {
	_ = c.c.SetReadDeadline(deadline)
	defer func() { _ = c.c.SetReadDeadline(time.Time{}) }()
	for {
		for {
			k, payload, n, err := p.parse(c.buf[c.r:c.w])
			if err != nil {
				return err
			}
			if n == 0 {
				break
			}
			c.r += n
			if k == want {
				return nil
			}
			if k == kRefused {
				return fmt.Errorf("refused: %q", payload)
			}
			if k == kPing {
				if err := c.write([]byte("PONG\r\n")); err != nil {
					return err
				}
			}
		}
		if _, err := c.fill(); err != nil {
			return err
		}
	}
}
