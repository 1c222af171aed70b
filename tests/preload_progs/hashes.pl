# hashes.pl — a hash/array/regex/sprintf workload with deterministic output.
use strict;
use warnings;
my $seed = 42;
sub rnd { $seed = ($seed * 1103515245 + 12345) % 2147483648; return $seed >> 16; }
my %h;
my @words;
for my $i (1 .. 80000) {
  my $w = join "", map { chr(97 + rnd() % 16) } 1 .. (1 + rnd() % 10);
  push @words, $w;
  $h{$w}++;
}
my @top = (sort { $h{$b} <=> $h{$a} || $a cmp $b } keys %h)[0 .. 4];
print scalar(@words), " ", scalar(keys %h), " @top\n";
my %byfirst;
push @{ $byfirst{ substr($_, 0, 1) } }, $_ for @words;
print join(",", map { "$_=" . scalar(@{ $byfirst{$_} }) } sort keys %byfirst), "\n";
my $text = join " ", @words[0 .. 20000];
my $n = () = $text =~ /\b(a\w*b)\b/g;
(my $up = $text) =~ s/([aeiou])/uc $1/ge;
print "$n ", length($up), " ", substr($up, 0, 40), "\n";
my @recs = map { sprintf("%05d:%s:%x", $_, $words[$_], $_ * 7) } 0 .. 30000;
@recs = sort { (split /:/, $b)[1] cmp (split /:/, $a)[1] } @recs;
print "$recs[0] $recs[-1]\n";
