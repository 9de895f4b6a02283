package secretscan

import (
	"bytes"
	"fmt"
	"strings"
)

func databaseRules() []*Rule {
	return []*Rule{
		{
			ID: RuleDatabaseURL, Title: "Database or broker URL pointing at production", Provider: "",
			Severity: SeverityHigh, Kind: KindSecret, Env: envIdentity, prefix: 0,
			Format:  "postgres/mysql/mongodb/redis/amqp/... URLs, JDBC strings, Go MySQL and libpq DSNs whose host is in a production zone or CIDR; kind endpoint when the password is absent or a reference",
			anchors: []string{"://", "jdbc:", "@tcp(", "host="}, detect: (*fileState).urls,
			TruePositives: []Example{
				// a DSN in a JSON string in YAML
				{"configmap.yaml", "data:\n  config.json: '{\"database\": {\"url\": \"mysql://app:Zk4Qm8Xv2Lc7@db.prod.example.com:3306/app\"}}'\n"},
				{"db.env", "DATABASE_URL=postgres://app:Zk4Qm8Xv2Lc7@db.prod.example.com:5432/app\n"},
				{"db.env", "DATABASE_URL=postgres://app:${DB_PASSWORD}@db.prod.example.com:5432/app\n"},
				{"db.properties", "spring.datasource.url=jdbc:postgresql://10.20.4.7:5432/app?user=app&password=Zk4Qm8Xv2Lc7\n"},
			},
			FalsePositives: []Example{
				{"db.env", "DATABASE_URL=postgres://app:Zk4Qm8Xv2Lc7@db.staging.example.com:5432/app\n"},
				{"db.properties", "spring.datasource.url=jdbc:postgresql://10.30.4.7:5432/app\n"},
			},
		},
	}
}

// dbSchemes are URL schemes of databases and brokers.
var dbSchemes = map[string]bool{
	"postgres": true, "postgresql": true, "mysql": true, "mariadb": true, "mongodb": true, "mongodb+srv": true,
	"redis": true, "rediss": true, "amqp": true, "amqps": true, "kafka": true, "nats": true, "mssql": true,
	"sqlserver": true, "clickhouse": true, "cassandra": true, "memcached": true, "elasticsearch": true,
	"oracle": true, "cockroachdb": true, "tcp": false,
}

// urls finds URLs, JDBC strings and DSNs in a value.
func (st *fileState) urls(it *item, kc keyClass, _ *Rule) bool {
	v := it.val
	handled := false
	jdbc := bytes.Contains(v, []byte("jdbc:"))
	if jdbc {
		for _, loc := range reJDBC.FindAllIndex(v, -1) {
			if st.jdbc(it, kc, loc[0], loc[1]) {
				handled = true
			}
		}
	}
	if bytes.Contains(v, []byte("://")) {
		for _, loc := range reURL.FindAllIndex(v, -1) {
			if loc[0] >= 5 && bytes.HasSuffix(v[:loc[0]], []byte("jdbc:")) {
				continue
			}
			if jdbc && insideJDBC(v, loc[0]) {
				continue
			}
			raw := string(v[loc[0]:loc[1]])
			scheme, pw, hosts := parseAuthority(raw)
			for _, hp := range hosts {
				h, p := splitHostPort(hp)
				if st.db(it, kc, scheme, h, p, pw, loc[0], loc[1]) {
					handled = true
				}
			}
		}
	}
	if bytes.Contains(v, []byte("@tcp(")) {
		for _, sm := range reGoDSN.FindAllSubmatchIndex(v, -1) {
			h, p := splitHostPort(string(v[sm[6]:sm[7]]))
			pw := ""
			if sm[4] >= 0 {
				pw = string(v[sm[4]:sm[5]])
			}
			if st.db(it, kc, "mysql", h, p, pw, sm[0], sm[1]) {
				handled = true
			}
		}
	}
	if bytes.Contains(v, []byte("host=")) {
		if sm := reLibpq.FindSubmatchIndex(v); sm != nil {
			pw := ""
			if pm := reLibpqPass.FindSubmatch(v); pm != nil {
				pw = string(pm[1])
			}
			if st.db(it, kc, "postgres", string(v[sm[2]:sm[3]]), 0, pw, 0, len(v)) {
				handled = true
			}
		}
	}
	return handled
}

// jdbc judges a JDBC string.
func (st *fileState) jdbc(it *item, kc keyClass, start, end int) bool {
	sub, h, p, pw, ok := parseJDBC(string(it.val[start:end]))
	return ok && st.db(it, kc, sub, h, p, pw, start, end)
}

// db judges one URL-like destination. Database and broker URLs with a
// production host are findings (secret with an inline password, endpoint
// otherwise); other URLs only mark their block. It reports whether the URL
// was a database/broker URL (so generic rules skip the value).
func (st *fileState) db(it *item, kc keyClass, scheme, h string, port uint16, pw string, start, end int) bool {
	if h == "" {
		return false
	}
	isDB := dbSchemes[scheme] || scheme != "" && !strings.HasPrefix(scheme, "http") && !strings.HasPrefix(scheme, "ws") && !strings.HasPrefix(scheme, "ftp") && !strings.HasPrefix(scheme, "file") && !strings.HasPrefix(scheme, "s3") && !strings.HasPrefix(scheme, "git") && !strings.HasPrefix(scheme, "ssh") && dbLike(scheme)
	if !isDB {
		st.host(it, kc, h, port, start, end, "")
		return false
	}
	cls := st.host(it, kc, h, port, start, end, scheme)
	if cls != hostProduction {
		return true
	}
	r := st.d.rule[RuleDatabaseURL]
	f := st.newFinding(r, it, start, end, "")
	f.Redacted = redactURL(string(it.val[start:end]), pw)
	if pw != "" && !isPlaceholder([]byte(pw)) && !isReferenceValue([]byte(pw)) {
		f.Message = fmt.Sprintf("%s URL with a password for production host %s", scheme, h)
		f.Kind = KindSecret
	} else {
		f.Message = fmt.Sprintf("%s URL points at production host %s (no literal password)", scheme, h)
		f.Kind = KindEndpoint
		f.Severity = SeverityMedium
	}
	st.report(f)
	return true
}

func dbLike(scheme string) bool {
	for s, isDB := range dbSchemes {
		if isDB && strings.Contains(scheme, s) {
			return true
		}
	}
	return false
}

// redactURL replaces the password (and anything after a password= key).
func redactURL(s, pw string) string {
	if pw != "" {
		s = strings.ReplaceAll(s, pw, "****")
	}
	return s
}
