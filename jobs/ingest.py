"""spark-submit entry point for the ingest stage: spark-submit jobs/ingest.py --ds YYYY-MM-DD [--conf F] [--set k=v]"""
import sys

from recjob.cli import main

if __name__ == "__main__":
    sys.exit(main(["ingest", *sys.argv[1:]]))
