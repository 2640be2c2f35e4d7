//! The load benchmark's command line (`bench/run.sh [flood|steady|backlog|scaling|all]`); the benchmark
//! itself is `rackwatch_tests::bench`.

fn main() {
    rackwatch_tests::bench::main();
}
