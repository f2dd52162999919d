"""``recjob web``: a read-only web application over the published tables of one warehouse. It needs no Spark
session and never opens the metastore: it reads what publish leaves beside the tables (``files``), so it runs
beside a run."""
