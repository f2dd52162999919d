"""spark-submit entry point for the train stage: spark-submit jobs/train.py --ds YYYY-MM-DD [--conf F] [--set k=v]"""
import sys

from recjob.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
