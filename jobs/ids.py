"""spark-submit entry point for the ids stage: spark-submit jobs/ids.py --ds YYYY-MM-DD [--conf F] [--set k=v]"""
import sys

from recjob.cli import main

if __name__ == "__main__":
    sys.exit(main(["ids", *sys.argv[1:]]))
