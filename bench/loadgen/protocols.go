package main

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"strconv"
	"time"
)

// kind is what parse found at the start of the buffer.
type kind int

const (
	kNone       kind = iota // something nobody counts (INFO, +OK, a presence push, ...)
	kDelivery               // a message for a subscriber: payload is its bytes
	kAck                    // a publish (or a handshake request) was accepted
	kRefused                // it was not: payload is the reason
	kPing                   // NATS PING: answer PONG
	kPong                   // NATS PONG
	kSubscribed             // Redis confirmed a SUBSCRIBE
)

// proto is one system's wire protocol, as little of it as the bench needs.
type proto interface {
	openSubscriber(addr string, i int) (*conn, error)
	openPublisher(addr string) (*conn, error)
	// parse looks at the start of b: n == 0 means b holds no complete item yet. A returned
	// payload points into b.
	parse(b []byte) (k kind, payload []byte, n int, err error)
	// acknowledges says whether the server answers every publish.
	acknowledges() bool
}

const handshakeTimeout = 10 * time.Second

func protocolFor(spec *Spec) (proto, error) {
	switch spec.System {
	case "rtm2":
		return &rtm2Proto{spec: spec}, nil
	case "redis":
		return &redisProto{spec: spec}, nil
	case "nats":
		return &natsProto{spec: spec}, nil
	}
	return nil, fmt.Errorf("unknown system %q", spec.System)
}

// --- rtm2: WebSocket by hand, MessagePack read only as far as needed -------------------------

type rtm2Proto struct{ spec *Spec }

func (p *rtm2Proto) acknowledges() bool { return true }

func (p *rtm2Proto) openSubscriber(addr string, i int) (*conn, error) {
	return p.open(addr, p.spec.SubscriberHandshakes[i])
}

func (p *rtm2Proto) openPublisher(addr string) (*conn, error) {
	return p.open(addr, p.spec.PublisherHandshake)
}

// open upgrades a connection to WebSocket, then sends each request frame and waits for its
// successful Reply before the next.
func (p *rtm2Proto) open(addr string, requests [][]byte) (*conn, error) {
	c, err := dial(addr)
	if err != nil {
		return nil, err
	}
	deadline := time.Now().Add(handshakeTimeout)
	err = c.write([]byte("GET / HTTP/1.1\r\nHost: " + addr + "\r\nUpgrade: websocket\r\n" +
		"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n" +
		"Sec-WebSocket-Version: 13\r\n\r\n"))
	if err == nil {
		err = c.upgraded(deadline)
	}
	for _, frame := range requests {
		if err != nil {
			break
		}
		if err = c.write(frame); err == nil {
			err = c.await(p, kAck, deadline)
		}
	}
	if err != nil {
		c.close()
		return nil, err
	}
	return c, nil
}

// upgraded reads the HTTP response to the upgrade request and checks it switched protocols.
func (c *conn) upgraded(deadline time.Time) error {
	_ = c.c.SetReadDeadline(deadline)
	defer func() { _ = c.c.SetReadDeadline(time.Time{}) }()
	for {
		if end := bytes.Index(c.buf[c.r:c.w], []byte("\r\n\r\n")); end >= 0 {
			head := c.buf[c.r : c.r+end]
			if !bytes.HasPrefix(head, []byte("HTTP/1.1 101")) {
				return fmt.Errorf("the upgrade was refused: %q", head[:min(len(head), 80)])
			}
			c.r += end + 4
			return nil
		}
		if _, err := c.fill(); err != nil {
			return err
		}
	}
}

// parse reads one server WebSocket frame (servers never mask) and, for a binary one, the
// MessagePack array in it as far as its tag says: tag 8 is a ChannelMessage (channel,
// channel_type, publisher, payload, ...), tag 1 a Reply (rid, code, reason, result).
func (p *rtm2Proto) parse(b []byte) (kind, []byte, int, error) {
	if len(b) < 2 {
		return kNone, nil, 0, nil
	}
	if b[1]&0x80 != 0 {
		return kNone, nil, 0, fmt.Errorf("a masked frame from the server")
	}
	size, head := uint64(b[1]&0x7F), 2
	switch size {
	case 126:
		if len(b) < 4 {
			return kNone, nil, 0, nil
		}
		size, head = uint64(binary.BigEndian.Uint16(b[2:])), 4
	case 127:
		if len(b) < 10 {
			return kNone, nil, 0, nil
		}
		size, head = binary.BigEndian.Uint64(b[2:]), 10
	}
	if size > 1<<30 {
		return kNone, nil, 0, fmt.Errorf("a %d-byte frame", size)
	}
	total := head + int(size)
	if len(b) < total {
		return kNone, nil, 0, nil
	}
	if b[0]&0x80 == 0 {
		return kNone, nil, 0, fmt.Errorf("a fragmented message")
	}
	switch b[0] & 0x0F {
	case 0x2:
	case 0x8:
		return kNone, nil, 0, fmt.Errorf("the server closed the WebSocket: %q", b[head:total])
	default: // text, ping, pong: nothing the bench needs
		return kNone, nil, total, nil
	}
	k, payload, err := rtm2Frame(b[head:total])
	return k, payload, total, err
}

func rtm2Frame(data []byte) (kind, []byte, error) {
	m := msgpack{b: data}
	count := m.array()
	tag := m.uint()
	if m.err != nil {
		return kNone, nil, m.err
	}
	switch tag {
	case 8: // ChannelMessage
		if count < 4 {
			return kNone, nil, fmt.Errorf("a ChannelMessage of %d fields", count)
		}
		m.skip() // channel
		m.skip() // channel_type
		m.skip() // publisher
		payload := m.bin()
		return kDelivery, payload, m.err
	case 1: // Reply
		m.uint() // rid
		code := m.uint()
		if m.err != nil {
			return kNone, nil, m.err
		}
		if code == 0 {
			return kAck, nil, nil
		}
		reason := ""
		if count > 3 {
			reason = string(m.str())
		}
		return kRefused, []byte(fmt.Sprintf("code %d: %s", code, reason)), nil
	}
	return kNone, nil, nil
}

// msgpack reads the few MessagePack types rtm2's ChannelMessage and Reply start with; the
// first thing it does not know sets err.
type msgpack struct {
	b   []byte
	err error
}

func (m *msgpack) take(n int) []byte {
	if m.err != nil {
		return nil
	}
	if n < 0 || n > len(m.b) {
		m.err = fmt.Errorf("a MessagePack value runs past its frame")
		return nil
	}
	out := m.b[:n]
	m.b = m.b[n:]
	return out
}

func (m *msgpack) byte1() byte {
	b := m.take(1)
	if b == nil {
		return 0
	}
	return b[0]
}

func (m *msgpack) be(n int) uint64 {
	b := m.take(n)
	var v uint64
	for _, x := range b {
		v = v<<8 | uint64(x)
	}
	return v
}

func (m *msgpack) bad(b byte, what string) {
	if m.err == nil {
		m.err = fmt.Errorf("MessagePack byte 0x%02x where %s was expected", b, what)
	}
}

func (m *msgpack) array() int {
	b := m.byte1()
	switch {
	case b >= 0x90 && b <= 0x9F:
		return int(b & 0x0F)
	case b == 0xDC:
		return int(m.be(2))
	case b == 0xDD:
		return int(m.be(4))
	}
	m.bad(b, "an array")
	return 0
}

func (m *msgpack) uint() uint64 {
	b := m.byte1()
	switch {
	case b <= 0x7F:
		return uint64(b)
	case b >= 0xCC && b <= 0xCF:
		return m.be(1 << (b - 0xCC))
	}
	m.bad(b, "an unsigned integer")
	return 0
}

func (m *msgpack) str() []byte {
	b := m.byte1()
	switch {
	case b >= 0xA0 && b <= 0xBF:
		return m.take(int(b & 0x1F))
	case b >= 0xD9 && b <= 0xDB:
		return m.take(int(m.be(1 << (b - 0xD9))))
	}
	m.bad(b, "a string")
	return nil
}

func (m *msgpack) bin() []byte {
	b := m.byte1()
	if b >= 0xC4 && b <= 0xC6 {
		return m.take(int(m.be(1 << (b - 0xC4))))
	}
	m.bad(b, "bytes")
	return nil
}

// skip passes over one scalar: nil, bool, integer, float, string or bytes.
func (m *msgpack) skip() {
	b := m.byte1()
	switch {
	case b <= 0x7F, b >= 0xE0, b == 0xC0, b == 0xC2, b == 0xC3:
	case b >= 0xA0 && b <= 0xBF:
		m.take(int(b & 0x1F))
	case b >= 0xCC && b <= 0xCF:
		m.take(1 << (b - 0xCC))
	case b >= 0xD0 && b <= 0xD3:
		m.take(1 << (b - 0xD0))
	case b == 0xCA:
		m.take(4)
	case b == 0xCB:
		m.take(8)
	case b >= 0xD9 && b <= 0xDB:
		m.take(int(m.be(1 << (b - 0xD9))))
	case b >= 0xC4 && b <= 0xC6:
		m.take(int(m.be(1 << (b - 0xC4))))
	default:
		m.bad(b, "a scalar")
	}
}

// --- Redis: RESP -----------------------------------------------------------------------------

type redisProto struct{ spec *Spec }

func (p *redisProto) acknowledges() bool { return true }

func (p *redisProto) openSubscriber(addr string, _ int) (*conn, error) {
	c, err := dial(addr)
	if err != nil {
		return nil, err
	}
	ch := p.spec.Channel
	err = c.write([]byte(fmt.Sprintf("*2\r\n$9\r\nSUBSCRIBE\r\n$%d\r\n%s\r\n", len(ch), ch)))
	if err == nil {
		err = c.await(p, kSubscribed, time.Now().Add(handshakeTimeout))
	}
	if err != nil {
		c.close()
		return nil, err
	}
	return c, nil
}

func (p *redisProto) openPublisher(addr string) (*conn, error) { return dial(addr) }

// line returns the index of the "\r\n" ending the line at the start of b, or -1.
func line(b []byte) int { return bytes.Index(b, []byte("\r\n")) }

// parse reads an integer reply (PUBLISH's: an acknowledgement), an error, or a push: an array
// of bulk strings and integers whose first is "message" (then the third is the payload) or
// "subscribe".
func (p *redisProto) parse(b []byte) (kind, []byte, int, error) {
	end := line(b)
	if end < 0 {
		return kNone, nil, 0, nil
	}
	switch b[0] {
	case ':':
		return kAck, nil, end + 2, nil
	case '+':
		return kNone, nil, end + 2, nil
	case '-':
		return kRefused, b[1:end], end + 2, nil
	case '*':
	default:
		return kNone, nil, 0, fmt.Errorf("unexpected RESP %q", b[:min(len(b), 40)])
	}
	count, err := strconv.Atoi(string(b[1:end]))
	if err != nil {
		return kNone, nil, 0, fmt.Errorf("bad RESP array %q", b[:end])
	}
	pos := end + 2
	var first, third []byte
	for i := 0; i < count; i++ {
		end := line(b[pos:])
		if end < 0 {
			return kNone, nil, 0, nil
		}
		var item []byte
		switch b[pos] {
		case '$':
			n, err := strconv.Atoi(string(b[pos+1 : pos+end]))
			if err != nil || n < 0 {
				return kNone, nil, 0, fmt.Errorf("bad RESP bulk string %q", b[pos:pos+end])
			}
			start := pos + end + 2
			if len(b) < start+n+2 {
				return kNone, nil, 0, nil
			}
			item = b[start : start+n]
			pos = start + n + 2
		case ':':
			item = b[pos+1 : pos+end]
			pos += end + 2
		default:
			return kNone, nil, 0, fmt.Errorf("unexpected RESP item %q", b[pos:pos+end])
		}
		switch i {
		case 0:
			first = item
		case 2:
			third = item
		}
	}
	switch string(first) {
	case "message":
		return kDelivery, third, pos, nil
	case "subscribe":
		return kSubscribed, nil, pos, nil
	}
	return kNone, nil, pos, nil
}

// --- NATS: the text protocol -----------------------------------------------------------------

type natsProto struct{ spec *Spec }

// acknowledges is false: with "verbose":false a PUB gets no answer; a PING at the end does.
func (p *natsProto) acknowledges() bool { return false }

const natsConnect = "CONNECT {\"verbose\":false,\"pedantic\":false,\"echo\":false}\r\n"

func (p *natsProto) open(addr string, sub bool) (*conn, error) {
	c, err := dial(addr)
	if err != nil {
		return nil, err
	}
	hello := natsConnect
	if sub {
		hello += "SUB " + p.spec.Channel + " 1\r\n"
	}
	// The PONG means the server has taken the SUB: no publish can overtake it.
	err = c.write([]byte(hello + "PING\r\n"))
	if err == nil {
		err = c.await(p, kPong, time.Now().Add(handshakeTimeout))
	}
	if err != nil {
		c.close()
		return nil, err
	}
	return c, nil
}

func (p *natsProto) openSubscriber(addr string, _ int) (*conn, error) { return p.open(addr, true) }

func (p *natsProto) openPublisher(addr string) (*conn, error) { return p.open(addr, false) }

// parse reads one line, and for "MSG <subject> <sid> [reply-to] <#bytes>" its payload too.
func (p *natsProto) parse(b []byte) (kind, []byte, int, error) {
	end := line(b)
	if end < 0 {
		return kNone, nil, 0, nil
	}
	l := b[:end]
	switch {
	case bytes.HasPrefix(l, []byte("MSG ")):
		n, err := strconv.Atoi(string(l[bytes.LastIndexByte(l, ' ')+1:]))
		if err != nil || n < 0 {
			return kNone, nil, 0, fmt.Errorf("bad NATS MSG line %q", l)
		}
		start := end + 2
		if len(b) < start+n+2 {
			return kNone, nil, 0, nil
		}
		return kDelivery, b[start : start+n], start + n + 2, nil
	case bytes.Equal(l, []byte("PING")):
		return kPing, nil, end + 2, nil
	case bytes.Equal(l, []byte("PONG")):
		return kPong, nil, end + 2, nil
	case bytes.HasPrefix(l, []byte("-ERR")):
		return kNone, nil, 0, fmt.Errorf("nats-server: %s", l)
	}
	return kNone, nil, end + 2, nil // INFO, +OK
}
