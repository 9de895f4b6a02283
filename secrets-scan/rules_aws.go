package secretscan

func awsRules() []*Rule {
	return []*Rule{
		{
			ID: RuleAWSKeyID, Title: "AWS access key id of a production account", Provider: "aws",
			Severity: SeverityCritical, Kind: KindSecret, Env: envIdentity, prefix: 4,
			Format:  "AKIA/ASIA + 16 base32; the account is decoded from the key id (legacy AKIAI/AKIAJ keys: by context)",
			re:      mustRe(`\b(?:AKIA|ASIA|ABIA|ACCA)[A-Z2-7]{16}`),
			anchors: []string{"AKIA", "ASIA", "ABIA", "ACCA"}, detect: (*fileState).awsKeyID,
			TruePositives: []Example{
				{"aws.ini", "[default]\naws_access_key_id = AKIARZPUZDIKGLB5JZPW\n"},
			},
			FalsePositives: []Example{
				{"aws.ini", "[default]\naws_access_key_id = AKIATCH6YDSY6AAREIZU\n"},
				{"aws.ini", "[default]\naws_access_key_id = AKIAIOSFODNN7EXAMPLE\n"},
			},
		},
		{
			ID: RuleAWSSecret, Title: "AWS secret access key of a production account", Provider: "aws",
			Severity: SeverityCritical, Kind: KindSecret, Env: envContext, prefix: 0,
			Format: "40 [A-Za-z0-9/+] under a *secret* key; the access key id beside it (or the block) decides",
			byKey:  &keyRule{secretKey: true, names: []string{"secret_access_key", "secretaccesskey", "secret-access-key"}, value: mustRe(`^[A-Za-z0-9/+]{40}$`), paired: true},
			TruePositives: []Example{
				// two pairs in one flat file: each secret goes with the key id of its own prefix
				{"app.env", "PROD_AWS_ACCESS_KEY_ID=AKIARZPUZDIKGLB5JZPW\nPROD_AWS_SECRET_ACCESS_KEY=q8Lm3Nc7Xv2Bt5Ry9Wp4Ks6Dh1Gf0Jz8Qe3Ua7I/\n"},
				// the pair read the other way: the secret before its key id
				{"aws.yaml", "aws:\n  secret_access_key: q8Lm3Nc7Xv2Bt5Ry9Wp4Ks6Dh1Gf0Jz8Qe3Ua7I/\n  access_key_id: AKIARZPUZDIKGLB5JZPW\n"},
				{"aws.ini", "[prod]\naws_access_key_id = AKIARZPUZDIKGLB5JZPW\naws_secret_access_key = q8Lm3Nc7Xv2Bt5Ry9Wp4Ks6Dh1Gf0Jz8Qe3Ua7I/\n"},
			},
			FalsePositives: []Example{
				// the staging pair of a file that also holds a production pair
				{"app.env", "PROD_AWS_ACCESS_KEY_ID=AKIARZPUZDIKGLB5JZPW\nSTAGING_AWS_ACCESS_KEY_ID=AKIATCH6YDSY6AAREIZU\nSTAGING_AWS_SECRET_ACCESS_KEY=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\n"},
				// a staging pair beside a production database host: the host is not AWS's evidence
				{"app.env", "AWS_ACCESS_KEY_ID=AKIATCH6YDSY6AAREIZU\nAWS_SECRET_ACCESS_KEY=q8Lm3Nc7Xv2Bt5Ry9Wp4Ks6Dh1Gf0Jz8Qe3Ua7I/\nDB_HOST=db.prod.example.com\n"},
				{"aws.ini", "[dev]\naws_access_key_id = AKIATCH6YDSY6AAREIZU\naws_secret_access_key = q8Lm3Nc7Xv2Bt5Ry9Wp4Ks6Dh1Gf0Jz8Qe3Ua7I/\n"},
			},
		},
	}
}

func (st *fileState) awsKeyID(it *item, _ keyClass, r *Rule) bool {
	found := false
	for _, loc := range r.re.FindAllIndex(it.val, -1) {
		if longer(it.val, loc) {
			continue
		}
		found = true
		kid := it.val[loc[0]:loc[1]]
		if isPlaceholder(kid) {
			continue
		}
		acct, ok := awsAccountFromKeyID(kid)
		switch {
		case !ok:
			// Legacy key id: only the block can tell.
			st.defer_(r, "aws", it.scope, st.newFinding(r, it, loc[0], loc[1], "AWS access key id (legacy format, account not encoded) in a production block"))
		case st.d.c.aws[acct]:
			st.report(st.newFinding(r, it, loc[0], loc[1], "AWS access key id of production account "+acct))
			st.addMarker(it.scope, marker{prod: true, provider: "aws", line: it.line, what: "AWS key of production account " + acct, paired: true, pair: pairPrefix(st.keyBuf)})
		case len(st.d.c.aws) > 0:
			st.addMarker(it.scope, marker{prod: false, provider: "aws", line: it.line, what: "AWS key of account " + acct, paired: true, pair: pairPrefix(st.keyBuf)})
		}
	}
	return found
}
