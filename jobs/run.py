"""spark-submit entry point for the whole pipeline in one application:
spark-submit jobs/run.py --ds YYYY-MM-DD [--from STAGE] [--to STAGE] [--conf F] [--set k=v]"""
import sys

from recjob.cli import main

if __name__ == "__main__":
    sys.exit(main(["run", *sys.argv[1:]]))
