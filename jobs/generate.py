"""spark-submit entry point for the generate stage: spark-submit jobs/generate.py [--conf F] [--set k=v]"""
import sys

from recjob.cli import main

if __name__ == "__main__":
    sys.exit(main(["generate", *sys.argv[1:]]))
