// Package scripts holds no code of its own: its tests check the
// repository's tooling and front page as a newcomer meets them. `make
// test` (scripts/test.sh) runs both test steps and reports both even when
// the first fails; the README links every document under docs/ and shows
// the key prefix the dev server really issues.
//
// The program in scripts/clicaptures (`make cli-captures`) records what a
// person sees in a terminal into docs/cli/captures.
package scripts
