"""Timing, peak memory, sizes and generated doc tables: what every
benchmark script measures and writes the same way."""
import os
import resource


def time_calls(step, warmup: int, repeats: int):
    """``(wall seconds, process CPU seconds)`` of each of ``repeats`` calls
    of ``step()`` after ``warmup`` untimed ones (the timing loop of both
    benchmark scripts; ``step`` synchronises CUDA itself)."""
    import time
    times, cpu = [], []
    for i in range(warmup + repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        step()
        if i >= warmup:
            times.append(time.perf_counter() - start)
            cpu.append(time.process_time() - start_cpu)
    return times, cpu


def parse_size(text: str):
    """``(H, W)`` from ``'HxW'`` or ``'S'`` (a square)."""
    h, _, w = text.lower().partition('x')
    return int(h), int(w or h)


def peak_rss_bytes() -> int:
    """This process's peak resident set size (``ru_maxrss``, KiB on
    Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def rss_bytes() -> int:
    """This process's resident set size now."""
    with open('/proc/self/statm') as f:
        return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE')


def peak_memory_bytes(device) -> int:
    """Peak memory of the cell: ``torch.cuda.max_memory_allocated`` on
    CUDA (reset it before the cell), the process's peak RSS on the CPU (a
    fresh process per cell: :mod:`.workers`)."""
    import torch
    if torch.device(device).type == 'cuda':
        return torch.cuda.max_memory_allocated(device)
    return peak_rss_bytes()


def replace_doc_block(doc: str, begin: str, end: str, block: str) -> None:
    """Replace what lies between the markers ``begin`` and ``end`` in the
    markdown file ``doc`` by ``block`` (the markers stay): how the benchmark
    scripts put their generated tables into docs/benchmarks.md."""
    with open(doc) as f:
        text = f.read()
    if begin not in text or end not in text:
        raise SystemExit(f'{doc} has no {begin} ... {end} block to '
                         f'fill; add the two markers where the table goes')
    head, rest = text.split(begin, 1)
    with open(doc, 'w') as f:
        f.write(head + begin + '\n' + block + end + rest.split(end, 1)[1])
