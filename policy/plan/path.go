package plan

import "strings"

// NormalizePath returns the one normal form of a request path that request
// rules match on, without the query. ok is false when the path cannot be
// normalised; such a request is denied (MalformedPathRequestRule).
//
// It is what Envoy's HTTP connection manager yields with
//
//	path_with_escaped_slashes_action: REJECT_REQUEST
//	normalize_path: true
//	merge_slashes: true
//
// applied in that order, as ConnectionManagerUtility::maybeNormalizePath
// (source/common/http/conn_manager_utility.cc) does, plus two refusals Envoy's
// route table must repeat (the generated intercept routes deny both first):
//
//   - The path must begin with "/" (origin form); "*" and absolute forms are
//     refused. A "#" anywhere (a fragment, even after the query) is refused,
//     as maybeNormalizePath does (http_reject_path_with_fragment).
//   - A dot segment with parameters ("/..;x/", "/.;/", dots escaped or not)
//     is refused: servers such as Tomcat read it as a dot segment, and
//     Envoy rewrites it only behind a runtime flag
//     (PathUtil::stripParametersFromDotSegments).
//   - An escaped slash ("%2F", "%5C", either case) in the path is refused:
//     REJECT_REQUEST, because a server behind the proxy may decode it into a
//     separator and walk out of the prefix the decision saw.
//   - A "%" that does not begin a valid escape ("%zz", "%4") is refused.
//     Envoy's canonicaliser passes it on and rewrites nested forms such as
//     "%%30" (CheckForNestedEscapes); refusing is the fail-closed subset.
//   - A NUL, literal or escaped ("%00"), is refused (INVALID in
//     kPathCharLookup, source/common/chromium_url/url_canon_path.cc).
//
// Canonicalisation follows Envoy's snapshot of Chromium's path canonicaliser
// (source/common/chromium_url/url_canon_path.cc, DoPartialPath, called from
// PathUtil::canonicalPath in source/common/http/path_utility.cc):
//
//   - "\" becomes "/".
//   - "." and ".." segments are resolved, "%2e" (either case) counting as a
//     dot; ".." never climbs above the root.
//   - An escape of an unreserved character (ALPHA, DIGIT, "-", ".", "_", "~")
//     is decoded; every other valid escape is kept exactly as written (hex
//     case included).
//   - Space, control characters, '"', "<", ">", "^", "`", "{", "|", "}",
//     DEL and every byte >= 0x80 are escaped as "%XX" (upper-case hex).
//
// Then PathTransformer::mergeSlashes (source/common/http/path_utility.cc)
// collapses runs of "/" into one, keeping a leading and a trailing slash.
//
// The result never holds a query; NormalizePath does not allocate when the
// path (without its query) is already in normal form.
func NormalizePath(raw string) (string, bool) {
	path := raw
	if i := strings.IndexByte(raw, '?'); i >= 0 {
		path = raw[:i]
	}
	if path == "" || path[0] != '/' || strings.IndexByte(raw, '#') >= 0 {
		return "", false
	}
	if isNormalPath(path) {
		return path, true
	}
	return canonicalPath(path)
}

// Character classes of Envoy's kPathCharLookup
// (source/common/chromium_url/url_canon_path.cc).
const (
	pathPass     = iota // copied as is
	pathEscape          // written as %XX
	pathUnescape        // an escape of it is decoded
	pathInvalid         // refused (NUL)
	pathSpecial         // '.', '%', '\\', '#': handled by canonicalPath
)

var pathClass = func() (t [256]uint8) {
	for c := range 256 {
		switch {
		case c == 0:
			t[c] = pathInvalid
		case c < 0x20 || c >= 0x7f:
			t[c] = pathEscape
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '-', c == '_', c == '~':
			t[c] = pathUnescape
		case strings.IndexByte(" \"<>^`{|}", byte(c)) >= 0:
			t[c] = pathEscape
		case strings.IndexByte(".%\\#", byte(c)) >= 0:
			t[c] = pathSpecial
		default:
			t[c] = pathPass
		}
	}
	return t
}()

// isNormalPath reports whether canonicalPath would return path unchanged,
// without building anything: no escapes, backslashes, fragment, characters
// to escape, dot segments or repeated slashes.
func isNormalPath(path string) bool {
	for i := 0; i < len(path); i++ {
		c := path[i]
		switch pathClass[c] {
		case pathPass, pathUnescape:
			if c == '/' && i > 0 && path[i-1] == '/' {
				return false
			}
		case pathSpecial:
			if c != '.' || path[i-1] == '/' {
				return false // an escape, "\", "#", or a dot opening a segment
			}
		default:
			return false
		}
	}
	return true
}

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// decodeEscape decodes the escape at s[i] ('%'), reporting false when s[i:]
// is not "%XX" with two hex digits.
func decodeEscape(s string, i int) (byte, bool) {
	if i+2 >= len(s) {
		return 0, false
	}
	h, ok1 := unhex(s[i+1])
	l, ok2 := unhex(s[i+2])
	return h<<4 | l, ok1 && ok2
}

// dotLen is Chromium's IsDot: the length of a dot at s[i] ("." or "%2e"),
// 0 when there is none.
func dotLen(s string, i int) int {
	if s[i] == '.' {
		return 1
	}
	if c, ok := decodeEscape(s, i); ok && s[i] == '%' && c == '.' {
		return 3
	}
	return 0
}

func isPathSlash(c byte) bool { return c == '/' || c == '\\' }

const upperHex = "0123456789ABCDEF"

// canonicalPath is the slow path of NormalizePath (see there for the rules
// and their sources). path begins with "/".
func canonicalPath(path string) (string, bool) {
	out := make([]byte, 0, len(path)+8)
	for i := 0; i < len(path); i++ {
		c := path[i]
		if dl := dotLen(path, i); dl > 0 {
			if len(out) == 0 || out[len(out)-1] != '/' {
				out = append(out, '.')
				i += dl - 1
				continue
			}
			// ClassifyAfterDot: ".", "./", "..", "../" (either dot escaped).
			after := i + dl
			if dotParams(path, after) {
				return "", false
			}
			switch {
			case after == len(path):
				i = after - 1 // "." at the end: the current directory
			case isPathSlash(path[after]):
				i = after // "./": skip it and its slash
			default:
				dl2 := dotLen(path, after)
				end := after + dl2
				if dl2 > 0 && (end == len(path) || isPathSlash(path[end])) {
					out = backUpToPreviousSlash(out)
					if end < len(path) {
						end++ // the slash after ".."
					}
					i = end - 1
				} else {
					out = append(out, '.')
					i += dl - 1
				}
			}
			continue
		}
		switch pathClass[c] {
		case pathInvalid:
			return "", false
		case pathEscape:
			out = append(out, '%', upperHex[c>>4], upperHex[c&15])
		case pathSpecial:
			switch c {
			case '\\':
				out = append(out, '/')
			case '#':
				return "", false
			case '%':
				v, ok := decodeEscape(path, i)
				if !ok || v == 0 || v == '/' || v == '\\' {
					return "", false // invalid escape, NUL, escaped slash
				}
				if pathClass[v] == pathUnescape {
					out = append(out, v)
				} else {
					out = append(out, path[i:i+3]...)
				}
				i += 2
			}
		default:
			out = append(out, c)
		}
	}
	return mergeSlashes(out), true
}

// dotParams reports whether a segment opened by a dot continues, at i, with
// parameters: ";" or a second dot and ";".
func dotParams(path string, i int) bool {
	if i < len(path) && path[i] == ';' {
		return true
	}
	if i == len(path) {
		return false
	}
	dl := dotLen(path, i)
	return dl > 0 && i+dl < len(path) && path[i+dl] == ';'
}

// backUpToPreviousSlash drops the last segment of out, which ends in "/",
// never climbing above the leading "/" (Chromium's BackUpToPreviousSlash).
func backUpToPreviousSlash(out []byte) []byte {
	i := len(out) - 1
	if i == 0 {
		return out
	}
	i--
	for i > 0 && out[i] != '/' {
		i--
	}
	return out[:i+1]
}

// mergeSlashes collapses runs of "/" (PathTransformer::mergeSlashes). p
// begins with "/".
func mergeSlashes(p []byte) string {
	w := 0
	for r := 0; r < len(p); r++ {
		if p[r] == '/' && w > 0 && p[w-1] == '/' {
			continue
		}
		p[w] = p[r]
		w++
	}
	return string(p[:w])
}
