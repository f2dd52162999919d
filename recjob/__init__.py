"""recjob: batch recommendations on Spark, trained with Keras over Petastorm shards."""
__version__ = "0.1.0"
