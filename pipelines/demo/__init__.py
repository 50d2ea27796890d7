"""`pix2pix demo` (what `make demo` runs): the whole workflow on built-in sample photos,
with a report, on a laptop with no data and no network.

    from pipelines.demo import DemoOptions, demo
    report = demo(DemoOptions(output_dir="demo"))
"""

from pipelines.demo.job import DemoOptions, add_arguments, demo, run

__all__ = ["DemoOptions", "add_arguments", "demo", "run"]
