"""cvmlaunch benchmarks: ratios against peers and physical limits, measured in the same run."""
