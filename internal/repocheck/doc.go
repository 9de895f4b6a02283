// Package repocheck holds tests of the repository's own tooling (the
// Makefile's promises), run with the other tests by `make test`. It has no
// code of its own.
package repocheck
