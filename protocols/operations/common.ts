import { z } from 'zod';

// Bounds on everything a peer can send: a frame is refused before it can make us work hard.
export const Name = z.string().min(1).max(256);
export const Id = z.string().min(1).max(128);
export const ScalarSchema = z.union([z.number(), z.string().max(10_000), z.boolean(), z.null()]);
export type Scalar = z.infer<typeof ScalarSchema>;
export const Features = z.array(Name).min(1).max(4_096);
