"""spark-submit entry point for the score stage: spark-submit jobs/score.py --ds YYYY-MM-DD [--conf F] [--set k=v]"""
import sys

from recjob.cli import main

if __name__ == "__main__":
    sys.exit(main(["score", *sys.argv[1:]]))
