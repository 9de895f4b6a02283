package secretscan

import (
	"bytes"
	"strconv"
	"strings"
)

// firstField is s up to the first of the separator bytes.
func firstField(s, seps string) string {
	if i := strings.IndexAny(s, seps); i >= 0 {
		return s[:i]
	}
	return s
}

func insideJDBC(v []byte, at int) bool {
	i := bytes.LastIndex(v[:at], []byte("jdbc:"))
	return i >= 0 && !bytes.ContainsAny(v[i:at], " \t\"'")
}

// parseAuthority splits scheme://[user[:password]@]host[:port][,host...]/...
// by hand: passwords in configuration are often not percent-encoded ('#',
// '?', '/' in them), which net/url rejects or misreads. The authority ends
// at the first '/' after the last '@' (or after "://" when there is none).
func parseAuthority(raw string) (scheme, password string, hosts []string) {
	i := strings.Index(raw, "://")
	scheme = strings.ToLower(raw[:i])
	rest := raw[i+3:]
	hostPart := rest
	if at := strings.LastIndexByte(rest, '@'); at >= 0 {
		userinfo := rest[:at]
		if c := strings.IndexByte(userinfo, ':'); c >= 0 {
			password = userinfo[c+1:]
		}
		hostPart = rest[at+1:]
	}
	hostPart = firstField(hostPart, "/?#")
	for _, h := range strings.Split(hostPart, ",") {
		if h != "" {
			hosts = append(hosts, h)
		}
	}
	if len(hosts) > 1 {
		hosts = hosts[:1] // mongodb://a,b,c: the first host names the cluster
	}
	return scheme, password, hosts
}

// parseJDBC parses jdbc:<sub>://[user[:password]@]host[:port][/db][?k=v&...]
// and the ;k=v, @host:port and oracle host:port:sid forms.
func parseJDBC(s string) (sub, host string, port uint16, password string, ok bool) {
	rest, found := strings.CutPrefix(s, "jdbc:")
	if !found {
		return "", "", 0, "", false
	}
	sub, after, _ := strings.Cut(rest, ":")
	var hostport string
	switch {
	case strings.HasPrefix(after, "//"):
		hostport = after[2:]
	case strings.Contains(after, "@"): // oracle:thin:@host:port:sid or @//host:port/svc
		hostport = strings.TrimPrefix(after[strings.IndexByte(after, '@')+1:], "//")
	default:
		return "", "", 0, "", false
	}
	hostport = firstField(hostport, "/;?,")
	if at := strings.LastIndexByte(hostport, '@'); at >= 0 {
		hostport = hostport[at+1:]
	}
	host, port = splitHostPort(hostport)
	if strings.Count(hostport, ":") == 2 && !strings.Contains(hostport, "[") { // oracle host:port:sid
		parts := strings.Split(hostport, ":")
		host = parts[0]
		n, _ := strconv.ParseUint(parts[1], 10, 16)
		port = uint16(n)
	}
	// ASCII lower case keeps byte offsets (strings.ToLower does not on
	// invalid UTF-8: it panicked here on "jdbc:x:@\xb5password=").
	lower := string(lowerASCII(nil, []byte(s)))
	for _, k := range []string{"password=", "pwd="} {
		if i := strings.Index(lower, k); i >= 0 {
			password = firstField(s[i+len(k):], "&; ")
			break
		}
	}
	if password == "" {
		if i := strings.Index(after, "//"); i >= 0 {
			if at := strings.LastIndexByte(strings.SplitN(after[i+2:], "/", 2)[0], '@'); at >= 0 {
				if c := strings.IndexByte(after[i+2:i+2+at], ':'); c >= 0 {
					password = after[i+2+c+1 : i+2+at]
				}
			}
		}
	}
	return sub, host, port, password, true
}
