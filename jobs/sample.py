"""spark-submit entry point for the sample stage: spark-submit jobs/sample.py --ds YYYY-MM-DD [--conf F] [--set k=v]"""
import sys

from recjob.cli import main

if __name__ == "__main__":
    sys.exit(main(["sample", *sys.argv[1:]]))
