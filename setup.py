"""recjob: batch recommender for Spark + Airflow users.

Install with the pinned stack: pip install -c requirements/constraints.txt -e ".[test]"
"""
from setuptools import find_packages, setup

setup(
    name="recjob",
    version="0.1.0",
    description="Batch top-N recommendations on Spark: Keras embedding models trained through Petastorm, "
                "scheduled with Airflow",
    long_description=open("README.md", encoding="utf-8").read() if __import__("os").path.exists("README.md") else "",
    long_description_content_type="text/markdown",
    python_requires=">=3.10,<3.13",
    packages=find_packages(include=["recjob", "recjob.*"]),
    install_requires=[
        "pyspark>=4.0,<4.1",  # 4.1+ refuses pyarrow < 15 on Arrow paths
        "pyarrow>=14,<15",  # petastorm 0.13.1 breaks on 15/16
        "petastorm==0.13.1",
        "tensorflow-cpu>=2.16",
        "keras>=3",
        "numpy<2",
        "pandas<3",
        "PyYAML>=6",
        "matplotlib>=3.8,<3.10",  # run report figures
        "scipy>=1.11,<1.14",  # bpmf: sparse implicit-feedback products, Wishart draws (1.13 verified)
    ],
    extras_require={
        "airflow": ["apache-airflow>=3.0", "apache-airflow-providers-apache-spark>=5", "pyspark-client"],
        "test": ["pytest>=8"],
    },
    entry_points={"console_scripts": ["recjob=recjob.cli:main"]},
)
