// StdoutBuffering: stdout is line-buffered, so that result lines reach a
// pipe (the scheduler's log, a test) as they are printed.
// @preconcurrency: C's `stdout` is a global `var` that Swift 6 will not let
// a file that imports Foundation name; it is read here once, at start-up,
// before any other thread runs.
@preconcurrency import Glibc

enum StdoutBuffering {
    static func lineBuffered() { setvbuf(stdout, nil, _IOLBF, 0) }
}
