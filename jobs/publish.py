"""spark-submit entry point for the publish stage: spark-submit jobs/publish.py --ds YYYY-MM-DD [--conf F] [--set k=v]"""
import sys

from recjob.cli import main

if __name__ == "__main__":
    sys.exit(main(["publish", *sys.argv[1:]]))
