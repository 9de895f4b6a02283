package dnsguard

import (
	"encoding/binary"
	"errors"
)

// Helpers over packed DNS messages. They are only ever applied to messages
// dnsguard packed itself (cache entries), but they still bounds-check every
// access: a bug must not turn into a panic in the query path.

const (
	headerLen = 12
	// optRRLen is the size of an OPT RR with no options: root name (1),
	// type (2), class = UDP size (2), TTL = ext-rcode/version/flags (4),
	// RDLENGTH (2).
	optRRLen = 11
)

var errBadWire = errors.New("malformed packed message")

// skipName returns the offset just past the (possibly compressed) name at
// off.
func skipName(msg []byte, off int) (int, error) {
	for {
		if off >= len(msg) {
			return 0, errBadWire
		}
		c := int(msg[off])
		switch c & 0xC0 {
		case 0x00:
			if c == 0 {
				return off + 1, nil
			}
			off += 1 + c
		case 0xC0:
			if off+2 > len(msg) {
				return 0, errBadWire
			}
			return off + 2, nil
		default:
			return 0, errBadWire
		}
	}
}

// ttlOffsets returns the offsets of the TTL field of every RR in the
// answer, authority and additional sections of msg (which must not contain
// an OPT RR: its "TTL" is not a TTL).
func ttlOffsets(msg []byte) ([]uint16, error) {
	if len(msg) < headerLen {
		return nil, errBadWire
	}
	qd := int(binary.BigEndian.Uint16(msg[4:]))
	rrs := int(binary.BigEndian.Uint16(msg[6:])) + int(binary.BigEndian.Uint16(msg[8:])) + int(binary.BigEndian.Uint16(msg[10:]))
	off := headerLen
	var err error
	for i := 0; i < qd; i++ {
		if off, err = skipName(msg, off); err != nil {
			return nil, err
		}
		off += 4
	}
	out := make([]uint16, 0, rrs)
	for i := 0; i < rrs; i++ {
		if off, err = skipName(msg, off); err != nil {
			return nil, err
		}
		if off+10 > len(msg) || off > 0xFFFF {
			return nil, errBadWire
		}
		out = append(out, uint16(off+4))
		rdlen := int(binary.BigEndian.Uint16(msg[off+8:]))
		off += 10 + rdlen
	}
	if off != len(msg) {
		return nil, errBadWire
	}
	return out, nil
}

// setQuestionCase overwrites the question name of msg (which starts at
// offset 12, uncompressed) with the letters of qname, so a DNS 0x20 client
// sees its own case back. qname must be the same name in presentation
// format without escapes; it reports false (leaving msg possibly
// untouched) when the two do not line up.
func setQuestionCase(msg []byte, qname string) bool {
	off := headerLen
	i := 0
	for {
		if off >= len(msg) {
			return false
		}
		n := int(msg[off])
		if n == 0 {
			return i == len(qname) || (i == len(qname)-1 && qname[i] == '.')
		}
		if n&0xC0 != 0 || off+1+n > len(msg) || i+n > len(qname) {
			return false
		}
		for j := 0; j < n; j++ {
			a, b := msg[off+1+j], qname[i+j]
			if lowerASCII(a) != lowerASCII(b) {
				return false
			}
			msg[off+1+j] = b
		}
		i += n
		if i < len(qname) {
			if qname[i] != '.' {
				return false
			}
			i++
		}
		off += 1 + n
	}
}

func lowerASCII(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}
