from recjob.cli import console

console()
