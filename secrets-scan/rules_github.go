package secretscan

func githubRules() []*Rule {
	return []*Rule{
		{
			ID: RuleGitHub, Title: "GitHub token", Provider: "github",
			Severity: SeverityHigh, Kind: KindSecret, Env: envAlwaysLive, prefix: 4,
			Format:  "gh[pousr]_ + 36 [A-Za-z0-9], or github_pat_<22>_<59>",
			re:      mustRe(`\b(?:gh[pousr]_[A-Za-z0-9]{36}|github_pat_[A-Za-z0-9]{22}_[A-Za-z0-9]{59})`),
			anchors: []string{"ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_"}, message: "GitHub token",
			UnknownPositives: []Example{
				{"ci.env", "GITHUB_TOKEN=ghp_FLZDe1f8rESQedUStPKR0CsTy4Qwb8DwkNhF\n"},
			},
			FalsePositives: []Example{
				// A production database in the block is not GitHub's evidence: unknown, not production.
				{"ci.env", "DB_HOST=db.prod.example.com\nGITHUB_TOKEN=ghp_FLZDe1f8rESQedUStPKR0CsTy4Qwb8DwkNhF\n"},
				{"ci.env", "GITHUB_TOKEN=ghp_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\n"},
			},
		},
	}
}
