// Package servertest holds what the real-server test harnesses
// (internal/kafkatest, internal/redistest) share: a server run as a
// supervised child process, and the handing out of servers to tests.
//
// A Process runs one server in a directory of its own, one run at a time.
// Each run is a child process in its own process group, with its output
// appended to a file, and dies with the test binary (Pdeathsig; Linux). Start
// and Restart return once the server's readiness check passes, and fail with
// the tail of its logs if the run exits first or the start timeout passes; a
// run that died because a port was taken is started again on fresh ports by
// Retry. Stop sends SIGTERM to the run's process group and SIGKILL after the
// stop timeout; Kill sends SIGKILL, as a crash would. Both keep the directory
// for Restart; Close stops the server and removes it.
//
// A Harness hands a test either a server of its own (Require), closed when the
// test ends, or the test binary's shared one (Shared), started on first use
// and closed when TestMain's call to Main returns. Both skip the test when the
// server is not installed, unless DSTREAM_REQUIRE_IT=1, where they fail it.
//
// A Process begins its errors with the name its harness gives the server,
// e.g. "kafkatest: broker", so that the harness need not wrap them; the errors
// of FreePorts carry no prefix.
package servertest
