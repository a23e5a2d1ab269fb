package main

import "regexp"

// plainName matches what may be repeated in an error: a word that looks like a command or flag
// name. Anything else typed where a name was expected (a URL, a key=value string, a token) is
// never repeated, since it may hold a secret.
var plainName = regexp.MustCompile(`^[a-z][a-z0-9-]{0,39}$`)

// nameOrNothing returns " name" when name is plain, else "".
func nameOrNothing(prefix, name string) string {
	if !plainName.MatchString(name) {
		return ""
	}
	return " " + prefix + name
}

// suggest returns the candidate closest to name when it is close enough to be a typo (at most
// a third of its letters, and 2 at most, differ), or "".
func suggest(name string, candidates []string) string {
	if !plainName.MatchString(name) {
		return ""
	}
	best, bestDist := "", len(name)/3+1
	if bestDist > 2 {
		bestDist = 2
	}
	for _, c := range candidates {
		if d := editDistance(name, c); d <= bestDist && (best == "" || d < editDistance(name, best)) {
			best = c
		}
	}
	return best
}

// editDistance is the Damerau-Levenshtein distance (adjacent swaps count as one edit) of a and b.
func editDistance(a, b string) int {
	d := make([][]int, len(a)+1)
	for i := range d {
		d[i] = make([]int, len(b)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(a); i++ {
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(a)][len(b)]
}
