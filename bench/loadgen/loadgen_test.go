package main

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"slices"
	"testing"
)

// Frames as rtm2 serve encodes them (msgspec, protocol/frames.py), hex.
const (
	// ChannelMessage("bench", 1, "r1lp", payload, 0, "", 1764700000123, 42), the payload's
	// first 16 bytes 0..15 and then zeros.
	channelMessage = "9908a562656e636801a472316c70c480000102030405060708090a0b0c0d0e0f" +
		"0000000000000000000000000000000000000000000000000000000000000000" +
		"0000000000000000000000000000000000000000000000000000000000000000" +
		"0000000000000000000000000000000000000000000000000000000000000000" +
		"00000000000000000000000000000000" + "00a0cf0000019ae0510f7b2a"
	replyOK    = "9501cd303900a0c0"                     // Reply(12345, 0)
	replyError = "950107cd2b08aa6e6f74206a6f696e6564c0" // Reply(7, 11016, "not joined")
)

func unhex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// wsFrame is a server WebSocket binary frame (unmasked) around data.
func wsFrame(data []byte) []byte {
	var head []byte
	switch n := len(data); {
	case n < 126:
		head = []byte{0x82, byte(n)}
	case n < 65536:
		head = []byte{0x82, 126, byte(n >> 8), byte(n)}
	default:
		head = make([]byte, 10)
		head[0], head[1] = 0x82, 127
		binary.BigEndian.PutUint64(head[2:], uint64(n))
	}
	return append(head, data...)
}

// parsesWhole checks that every proper prefix of b is "need more" and b itself one item.
func parsesWhole(t *testing.T, p proto, b []byte) (kind, []byte) {
	t.Helper()
	for i := 0; i < len(b); i++ {
		if _, _, n, err := p.parse(b[:i]); n != 0 || err != nil {
			t.Fatalf("a %d-byte prefix of %d parsed as %d bytes (err %v)", i, len(b), n, err)
		}
	}
	k, payload, n, err := p.parse(b)
	if err != nil || n != len(b) {
		t.Fatalf("parsed %d of %d bytes, err %v", n, len(b), err)
	}
	return k, payload
}

func TestAnRTM2ChannelMessageYieldsItsPayloadAtAnyFrameSplit(t *testing.T) {
	p := &rtm2Proto{}
	k, payload := parsesWhole(t, p, wsFrame(unhex(t, channelMessage)))
	if k != kDelivery || len(payload) != 128 {
		t.Fatalf("kind %d, %d bytes", k, len(payload))
	}
	if binary.BigEndian.Uint64(payload) != 0x0001020304050607 ||
		binary.BigEndian.Uint64(payload[8:]) != 0x08090a0b0c0d0e0f {
		t.Fatalf("payload %x", payload[:16])
	}
}

func TestRTM2RepliesAreAcknowledgementsOrRefusalsWithTheirCode(t *testing.T) {
	p := &rtm2Proto{}
	if k, _ := parsesWhole(t, p, wsFrame(unhex(t, replyOK))); k != kAck {
		t.Fatalf("kind %d", k)
	}
	k, reason := parsesWhole(t, p, wsFrame(unhex(t, replyError)))
	if k != kRefused || string(reason) != "code 11016: not joined" {
		t.Fatalf("kind %d, %q", k, reason)
	}
}

func TestRTM2FramesOfEveryLengthEncodingParse(t *testing.T) {
	p := &rtm2Proto{}
	for _, size := range []int{10, 125, 126, 65535, 65536} {
		data := append(unhex(t, replyOK), make([]byte, size)...) // trailing bytes: ignored
		if k, _, n, err := p.parse(wsFrame(data)); k != kAck || n != len(wsFrame(data)) || err != nil {
			t.Fatalf("%d: kind %d, n %d, err %v", size, k, n, err)
		}
	}
	if _, _, _, err := p.parse([]byte{0x88, 2, 0x03, 0xE8}); err == nil {
		t.Fatal("a close frame is no error")
	}
	if _, _, _, err := p.parse([]byte{0x82, 0x81, 0, 0, 0, 0, 1}); err == nil {
		t.Fatal("a masked server frame is no error")
	}
	if _, _, _, err := p.parse(wsFrame([]byte{0x93, 0x08, 0xc1})); err == nil {
		t.Fatal("a ChannelMessage too short is no error")
	}
}

func TestRedisPushesRepliesAndConfirmations(t *testing.T) {
	p := &redisProto{}
	payload := bytes.Repeat([]byte{0xAB}, 128)
	push := append([]byte("*3\r\n$7\r\nmessage\r\n$5\r\nbench\r\n$128\r\n"), payload...)
	push = append(push, "\r\n"...)
	if k, got := parsesWhole(t, p, push); k != kDelivery || !bytes.Equal(got, payload) {
		t.Fatalf("kind %d, %x", k, got)
	}
	if k, _ := parsesWhole(t, p, []byte("*3\r\n$9\r\nsubscribe\r\n$5\r\nbench\r\n:1\r\n")); k != kSubscribed {
		t.Fatalf("kind %d", k)
	}
	if k, _ := parsesWhole(t, p, []byte(":100\r\n")); k != kAck {
		t.Fatalf("kind %d", k)
	}
	if k, _ := parsesWhole(t, p, []byte("-ERR wrong\r\n")); k != kRefused {
		t.Fatalf("kind %d", k)
	}
}

func TestNATSMessagesPingsAndPongs(t *testing.T) {
	p := &natsProto{}
	payload := bytes.Repeat([]byte{'\r'}, 128) // payload bytes are not line ends
	msg := append([]byte("MSG bench 1 128\r\n"), payload...)
	msg = append(msg, "\r\n"...)
	if k, got := parsesWhole(t, p, msg); k != kDelivery || !bytes.Equal(got, payload) {
		t.Fatalf("kind %d, %q", k, got)
	}
	for line, want := range map[string]kind{"PING\r\n": kPing, "PONG\r\n": kPong, "+OK\r\n": kNone} {
		if k, _ := parsesWhole(t, p, []byte(line)); k != want {
			t.Fatalf("%q: kind %d", line, k)
		}
	}
	if _, _, _, err := p.parse([]byte("-ERR 'Authorization Violation'\r\n")); err == nil {
		t.Fatal("-ERR is no error")
	}
}

// The values are Python's statistics.quantiles on the same data (its default method).
func TestQuantilesAreThoseOfPythonsStatisticsModule(t *testing.T) {
	data := []int64{5, 1, 9, 3, 7, 2, 8, 6, 4, 10, 100, 55, 12}
	slices.Sort(data)
	for _, c := range []struct {
		i, n int
		want float64
	}{{50, 100, 7.0}, {99, 100, 138.7}, {999, 1000, 144.37}} {
		if got := quantile(data, c.i, c.n); got < c.want-1e-9 || got > c.want+1e-9 {
			t.Fatalf("quantile %d/%d = %v, Python says %v", c.i, c.n, got, c.want)
		}
	}
	if got := quantile([]int64{1, 3}, 99, 100); got < 4.94-1e-9 || got > 4.94+1e-9 {
		t.Fatalf("two samples: %v, Python says 4.94", got)
	}
}

func TestAPatchedTemplateCarriesEachMessagesIdSequenceAndTime(t *testing.T) {
	tpl := Template{Frame: make([]byte, 40), PayloadOffset: 20, RidOffset: 2}
	f := &frames{tpl: tpl, size: 16, rid: 10}
	win := f.window(5, 2, 99)
	if len(win) != 80 {
		t.Fatalf("%d bytes", len(win))
	}
	for i, want := range []uint64{5, 6} {
		frame := win[i*40 : (i+1)*40]
		if rid := binary.BigEndian.Uint64(frame[2:]); rid != 10+uint64(i) {
			t.Fatalf("rid %d", rid)
		}
		if seq := binary.BigEndian.Uint64(frame[20:]); seq != want {
			t.Fatalf("seq %d", seq)
		}
		if sent := binary.BigEndian.Uint64(frame[28:]); sent != 99 {
			t.Fatalf("sent %d", sent)
		}
	}
}
