// Package rdd holds the batch operations used inside microbatch.Transform:
// what a Spark program does to one RDD (sortBy, zipWithIndex, take, join with
// a static table). A batch is a plain slice; every function returns a new
// slice and leaves its input untouched, and all of them are deterministic:
// sorts are stable, so equal elements keep their batch order.
package rdd
