"""spark-submit entry point for the shards stage: spark-submit jobs/shards.py --ds YYYY-MM-DD [--conf F] [--set k=v]"""
import sys

from recjob.cli import main

if __name__ == "__main__":
    sys.exit(main(["shards", *sys.argv[1:]]))
