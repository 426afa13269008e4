// Package weblog parses and generates the lines of the lecture's web log:
//
//	2016-12-06T08:58:35.318+0000 37.139.9.11 404 GET /codemove/TTCENCUFMH3C 0.026
//
// <date> <source IP> <status> <method> <URL> <seconds>. Parse validates a line
// without allocating and reports why a malformed one is rejected; the
// Generator writes deterministic lines with a skewed IP popularity (a few IPs
// make most requests) so that a top-N is meaningful.
package weblog
